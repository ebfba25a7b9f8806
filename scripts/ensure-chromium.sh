#!/bin/sh
# Make headless Chromium available for tests/test_report_browser.py (Debian packages `chromium`
# and `chromium-driver`). Installs them with apt-get when they are missing and this user can;
# always exits 0 and prints why, so `make test` goes on and the browser test skips with a reason.
set -u
CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver

if [ -x "$CHROMIUM" ] && [ -x "$CHROMEDRIVER" ]; then
    echo "ensure-chromium: $("$CHROMIUM" --version 2>/dev/null | head -n 1) and chromedriver present"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: chromium/chromedriver missing and no apt-get here: the browser test will skip"
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "ensure-chromium: chromium/chromedriver missing and no root or passwordless sudo: the browser test will skip"
    exit 0
fi
echo "ensure-chromium: installing chromium and chromium-driver with apt-get"
if $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; then
    echo "ensure-chromium: installed $("$CHROMIUM" --version 2>/dev/null | head -n 1)"
else
    echo "ensure-chromium: apt-get could not install chromium/chromium-driver: the browser test will skip"
fi
exit 0
