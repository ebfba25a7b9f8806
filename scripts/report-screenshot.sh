#!/bin/sh
# The README's picture of the report: a real run's report.html rendered in headless Chromium.
#   scripts/report-screenshot.sh runs/demo docs/report.png
# Needs /usr/bin/chromium (scripts/ensure-chromium.sh installs it). The page is self-contained, so
# Chromium's network stays off.
set -eu
RUN=${1:?usage: scripts/report-screenshot.sh RUN_DIR [OUT.png]}
OUT=${2:-docs/report.png}
REPORT="$(cd "$RUN" && pwd)/report.html"
[ -f "$REPORT" ] || { echo "report-screenshot: $REPORT: no report.html in this run folder" >&2; exit 2; }
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] || { echo "report-screenshot: $CHROMIUM missing (run scripts/ensure-chromium.sh)" >&2; exit 2; }
PROFILE=$(mktemp -d)
trap 'rm -rf "$PROFILE"' EXIT
"$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --hide-scrollbars --user-data-dir="$PROFILE" \
    --window-size=1280,1400 --screenshot="$OUT" "file://$REPORT" 2>/dev/null
[ -s "$OUT" ] || { echo "report-screenshot: Chromium wrote no $OUT" >&2; exit 1; }
echo "report-screenshot: $OUT from $REPORT"
