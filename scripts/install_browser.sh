#!/usr/bin/env bash
# Headless Chromium and ChromeDriver from Debian's packages, for the report's browser test
# (tests/report/test_browser.py) and scripts/report_page_check.py. Does nothing when both are already there; without
# root or apt-get it says what to install and exits 0 (the browser test is then skipped, with that reason).
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
  echo "installed $(chromium --version 2>/dev/null | head -1)"
else
  echo "install_browser: Chromium and ChromeDriver are missing; install Debian's chromium and chromium-driver (or" \
       "your system's equivalents) to run the report's browser test" >&2
fi
