#!/bin/sh
# Debian's chromium for the console's browser tests (tests/test_console_browser.py). Installs it
# only when it is missing and this is root on a machine with apt-get; otherwise says why and
# succeeds: the browser tests skip with a reason naming Chromium.
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium: /usr/bin/chromium is missing and cannot be installed here (needs root and apt-get); the console's browser tests will skip" >&2
  exit 0
fi
echo "chromium: installing Debian's chromium for the console's browser tests" >&2
if ! (apt-get install -y chromium >/dev/null 2>&1 || (apt-get update >/dev/null 2>&1 && apt-get install -y chromium >/dev/null 2>&1)); then
  echo "chromium: apt-get could not install it; the console's browser tests will skip" >&2
fi
exit 0
