/* Countdowns tick in the page from the deadlines the server computed (data-due, data-warn, UTC);
   a countdown crossing its warning or its deadline while the page is open is announced in the
   aria-live region. Times get the reader's local time beside UTC. No framework, no network. */
(function () {
  "use strict";
  var seen = {};  // label -> the phase the page last showed

  function text(seconds) {
    var s = Math.max(0, Math.round(Math.abs(seconds)));
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60), r = s % 60;
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + (m < 10 ? "0" : "") + m + "m";
    return m + "m " + (r < 10 ? "0" : "") + r + "s";
  }

  function announce(message) {
    var region = document.getElementById("announcer");
    if (!region) return;
    var line = document.createElement("p");
    line.textContent = message;
    region.appendChild(line);
    while (region.childNodes.length > 5) region.removeChild(region.firstChild);
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll(".countdown[data-due]").forEach(function (el) {
      var due = Date.parse(el.dataset.due), warn = el.dataset.warn ? Date.parse(el.dataset.warn) : NaN;
      var left = (due - now) / 1000, phase, icon, words;
      if (left <= 0) { phase = "breached"; icon = "\u2716"; words = "breached, overdue " + text(left); }
      else if (!isNaN(warn) && now >= warn) { phase = "warned"; icon = "\u26a0"; words = "warning, " + text(left) + " left"; }
      else { phase = "ok"; icon = "\u25f7"; words = text(left) + " left"; }
      el.className = "countdown cd-" + phase;
      el.querySelector(".cd-icon").textContent = icon;
      el.querySelector(".cd-text").textContent = words;
      var label = el.dataset.label || "";
      var before = seen[label];
      if (before && before !== phase && phase !== "ok") {
        announce(phase === "breached" ? "Deadline breached: " + label : "Deadline warning: " + label + ", " + text(left) + " left");
      }
      seen[label] = phase;
    });
  }

  function localTimes(root) {
    (root || document).querySelectorAll(".local[data-at]").forEach(function (el) {
      if (el.textContent) return;
      var at = new Date(el.dataset.at);
      if (!isNaN(at)) el.textContent = "(local " + at.toLocaleString() + ")";
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes();
    tick();
    setInterval(tick, 1000);
    document.body.addEventListener("htmx:afterSwap", function (e) { localTimes(e.target); tick(); });
  });
})();
