"""The console under load (`make bench-console`): how long the incidents page takes with 1,000 open
incidents, and how long a decision takes to show on every open page.

The stack is `incident up` (what `make run` serves) on a temporary data directory. The 1,000
incidents are written straight into the records database it uses (the projection, the board and
their SLA clocks, as ``records.append`` would leave them: ``populate``), since the page reads only
the records; opening that many through Temporal would measure Temporal, not the page.

- **page load**: the incidents page (the default filter: every incident not closed, so all 1,000
  rows), fetched as the signed-in admin: the server's answer over HTTP (p50, p95), and in Debian's
  chromium through Playwright, navigation start to the ``load`` event (p50, p95).
- **decision to every open page**: a real incident on a test playbook waits for Legal; several
  browser pages (each its own session) show it; Legal approves through the console; the time from
  sending the decision until the last open page shows it in its timeline, with no reload (the live
  stream, ``CR_CONSOLE_POLL_SECONDS``), for each of a few incidents.

Writes ``bench/console_results.md``; ``--json`` prints the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import Session

from bench.api_latency import BenchError, stack_env, start_stack, stop_stack
from process import exit_process
from records.store import reset_engines
from records.tables import IncidentBoard, IncidentRecord, SlaOutcome, records_engine
from roster import passwords, service
from settings import PROJECT_ROOT, get_settings

RESULTS = PROJECT_ROOT / "bench" / "console_results.md"
CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "bench console password"
PLAYBOOKS = ("physical-safety", "account-takeover", "emergency-disclosure", "legal-process",
             "preservation", "product-recall", "threat-self-harm")  # fmt: skip
DRILL = """name: bench-drill
version: 1
title: Bench drill (a decision for Legal)
default_severity: sev2
steps:
  - id: legal-approval
    title: Legal approves
    kind: approval
    roles: [legal]
    sla: {due: 2h, warn_at: 1h}
  - id: done
    kind: wait_for
    event: evidence_preserved
events:
  evidence_preserved:
    description: Evidence preserved
"""
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def figures(values: list[float]) -> dict[str, float]:
    return {"p50": rank(values, 0.5), "p95": rank(values, 0.95), "mean": statistics.fmean(values),
            "n": len(values)}  # fmt: skip


def populate(url: str, count: int, seed: int = 7) -> None:
    """``count`` open incidents in the records: projection, board and clocks, one transaction."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    with Session(records_engine(url)) as s:
        for n in range(count):
            iid = f"LOAD-{n:05d}"
            opened = now - timedelta(minutes=rng.randint(1, 60 * 24 * 5))
            due = now + timedelta(minutes=rng.randint(-30, 60 * 24))
            playbook = rng.choice(PLAYBOOKS)
            owner = rng.choice(("alice", "bob", "carol", "dmitri"))
            acked = rng.random() < 0.7
            s.add(IncidentRecord(
                incident_id=iid, playbook=playbook, playbook_hash="sha256:bench",
                workflow_id=f"wf-{iid}", run_id=uuid.uuid4().hex, severity=rng.choice(
                    ("sev0", "sev1", "sev2", "sev3")), status="acknowledged" if acked else "open",
                owner=owner, opened_at=opened, acknowledged_at=opened if acked else None,
                sla_breached=due < now, updated_at=now))  # fmt: skip
            roles = rng.sample(("legal", "lers", "privacy", "ic", "comms"), 2)
            s.add(IncidentBoard(
                incident_id=iid, steps="contain,classify", must_act=f",{owner},{roles[0]},",
                attention=rng.random() < 0.05, next_clock="contain", next_due_at=due,
                next_warn_at=due - timedelta(minutes=10), approvals="[]"))  # fmt: skip
            s.add(SlaOutcome(incident_id=iid, clock="contain", scope="step", kind="wall",
                             started_at=opened, due_seconds=3600, due_at=due, state="on_track",
                             outcome="pending"))  # fmt: skip
        s.commit()


def sign_in(base: str, handle: str) -> tuple[httpx.Client, str]:
    """An httpx client with ``handle``'s console session, and the session's CSRF token."""
    http = httpx.Client(base_url=base, trust_env=False, timeout=60)
    form = http.get("/console/signin")
    found = CSRF.search(form.text)
    assert found, form.text[:500]
    r = http.post("/console/signin", data={"handle": handle, "password": PASSWORD,
                                           "csrf": found.group(1)})  # fmt: skip
    if r.status_code != 303:
        raise BenchError(f"signing in as {handle}: {r.status_code}")
    page = http.get("/console/incidents?status=closed")
    token = CSRF.search(page.text)
    assert token
    return http, token.group(1)


def http_loads(http: httpx.Client, n: int, expect: int) -> list[float]:
    times = []
    for i in range(n + 3):
        started = time.perf_counter()
        r = http.get("/console/incidents")
        took = time.perf_counter() - started
        if r.status_code != 200 or f"{expect} incident" not in r.text:
            raise BenchError(f"incidents page: {r.status_code}, expected {expect} incidents")
        if i >= 3:  # warm-up
            times.append(took)
    return times


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])


def browser_session(browser: Any, base: str, handle: str) -> Any:
    page = browser.new_context().new_page()
    page.goto(f"{base}/console/signin")
    page.get_by_label("Handle").fill(handle)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/incidents", timeout=60_000)
    return page


def browser_loads(page: Any, base: str, n: int) -> list[float]:
    times = []
    for i in range(n + 2):
        page.goto(f"{base}/console/incidents", wait_until="load", timeout=60_000)
        took = page.evaluate(
            "() => { const t = performance.getEntriesByType('navigation')[0];"
            " return t.loadEventEnd - t.startTime; }"
        )
        if i >= 2:
            times.append(float(took) / 1000)
    return times


def open_drill(base: str, token: str) -> str:
    iid = f"DEC-{uuid.uuid4().hex[:6]}"
    r = httpx.post(f"{base}/incidents", headers={"authorization": f"Bearer {token}"}, timeout=30,
                   json={"playbook": "bench-drill", "summary": "bench", "id": iid})  # fmt: skip
    if r.status_code != 201:
        raise BenchError(f"opening {iid}: {r.status_code} {r.text[:200]}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = httpx.get(f"{base}/incidents/{iid}", timeout=30,
                           headers={"authorization": f"Bearer {token}"}).json()  # fmt: skip
        if status.get("pending_approvals"):
            return iid
        time.sleep(0.2)
    raise BenchError(f"{iid} never asked Legal")


def decision_to_pages(
    playwright: Any, base: str, token: str, pages_n: int, rounds: int
) -> dict[str, Any]:
    """Each open page in a browser of its own, as each person has: a browser keeps at most six
    connections to one host over HTTP/1.1, and every console page holds one for its stream."""
    legal, csrf = sign_in(base, "bench-legal")
    browsers = [launch(playwright) for _ in range(pages_n)]
    pages = [browser_session(b, base, "bench-admin") for b in browsers]
    every, first = [], []
    for n in range(rounds):
        iid = open_drill(base, token)
        for page in pages:
            page.goto(f"{base}/console/incidents/{iid}", wait_until="load")
        reason = f"lawful-{n}-{uuid.uuid4().hex[:4]}"
        started = time.perf_counter()
        r = legal.post(f"/console/incidents/{iid}/decide", data={
            "csrf": csrf, "step": "legal-approval", "decision": "approve", "role": "legal",
            "reason": reason})  # fmt: skip
        if r.status_code != 200 or "approved" not in r.text:
            raise BenchError(f"deciding {iid}: {r.status_code}")
        seen: dict[int, float] = {}
        while len(seen) < len(pages):
            for i, page in enumerate(pages):
                if i not in seen and page.locator(".timeline", has_text=reason).count():
                    seen[i] = time.perf_counter() - started
            if time.perf_counter() - started > 60:
                raise BenchError(f"{len(pages) - len(seen)} pages never showed the decision")
            time.sleep(0.02)
        every.append(max(seen.values()))
        print(
            f"  decision {n + 1}: pages showed it after "
            + ", ".join(f"{t:.2f}s" for t in sorted(seen.values())),
            file=sys.stderr,
        )
        first.append(min(seen.values()))
    legal.close()
    return {
        "pages": pages_n,
        "rounds": rounds,
        "every_page": figures(every),
        "first_page": figures(first),
        "samples": every,
    }


def run(cfg: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cr-bench-console-", ignore_cleanup_errors=True) as tmp:
        data = Path(tmp)
        playbooks = data / "playbooks"
        shutil.copytree(PROJECT_ROOT / "playbooks", playbooks)
        (playbooks / "bench-drill.yaml").write_text(DRILL)
        env = stack_env(data) | {
            "CR_PLAYBOOKS_DIR": str(playbooks),
            "PYTHONPATH": str(PROJECT_ROOT),
        }
        for name in [k for k in os.environ if k.startswith("CR_")]:
            del os.environ[name]
        os.environ.update({k: v for k, v in env.items() if k.startswith("CR_")})
        get_settings.cache_clear()
        reset_engines()
        settings = get_settings()
        proc = start_stack(env, data / "up.log")
        try:
            url = settings.effective_database_url
            populate(url, cfg.incidents)
            service.add_person("bench-legal", display_name="Legal", roles=["legal"],
                               actor="bench", url=url)  # fmt: skip
            for handle in ("bench-admin", "bench-legal"):
                passwords.set_password(handle, PASSWORD, actor="bench", url=url)
            base = f"http://{settings.api_host}:{settings.api_port}"
            token = settings.local_admin_token_file.read_text().strip()
            http, _ = sign_in(base, "bench-admin")
            result: dict[str, Any] = {
                "incidents": cfg.incidents, "poll_seconds": settings.console_poll_seconds,
                "http": figures(http_loads(http, cfg.n, cfg.incidents)),
            }  # fmt: skip
            if not CHROMIUM.exists():
                result["browser"] = "skipped: no Chromium at /usr/bin/chromium"
                return result
            from playwright.sync_api import sync_playwright

            with sync_playwright() as p:
                browser = launch(p)
                page = browser_session(browser, base, "bench-admin")
                result["browser"] = figures(browser_loads(page, base, cfg.browser_n))
                browser.close()
                result["decision"] = decision_to_pages(p, base, token, cfg.pages, cfg.rounds)
            return result
        finally:
            stop_stack(proc)


def render(r: dict[str, Any]) -> str:
    def ms(f: dict[str, float]) -> str:
        return f"p50 {f['p50'] * 1000:.0f} ms, p95 {f['p95'] * 1000:.0f} ms (n={f['n']:.0f})"

    lines = [
        "# Console load (`make bench-console`)", "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs; {r['incidents']} open "
        "incidents written into the records (projection, board, clocks); `incident up`.", "",
        f"- incidents page, server answer over HTTP: {ms(r['http'])}",
    ]  # fmt: skip
    if isinstance(r.get("browser"), dict):
        lines.append(f"- incidents page in chromium, navigation to `load`: {ms(r['browser'])}")
        d = r["decision"]
        lines.append(
            f"- decision to every open page ({d['pages']} pages, {d['rounds']} decisions, live "
            f"stream polling every {r['poll_seconds']} s): {ms(d['every_page'])}; first page "
            f"{ms(d['first_page'])}"
        )
    else:
        lines.append(f"- browser: {r.get('browser')}")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench-console", description=__doc__.split("\n")[0])
    parser.add_argument("--incidents", type=int, default=1000)
    parser.add_argument("--n", type=int, default=40, help="page loads over HTTP")
    parser.add_argument("--browser-n", type=int, default=20, help="page loads in chromium")
    parser.add_argument("--pages", type=int, default=5, help="open pages for the decision")
    parser.add_argument("--rounds", type=int, default=5, help="decisions")
    parser.add_argument(
        "--poll",
        type=float,
        default=1.0,
        help="CR_CONSOLE_POLL_SECONDS: how often the live stream looks (default 1)",
    )
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    code = 0
    try:
        result = run(cfg)
        text = render(result)
        RESULTS.write_text(text)
        print(json.dumps(result, indent=2) if cfg.json else text)
    except KeyboardInterrupt:
        code = 130
    except Exception as err:  # noqa: BLE001 - one line, never a traceback
        print(f"bench-console failed: {' '.join(str(err).split()) or type(err).__name__}",
              file=sys.stderr)  # fmt: skip
        code = 1
    exit_process(code)


if __name__ == "__main__":
    main()
