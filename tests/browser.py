"""Render an HTML report in real headless Chromium and report what a user would see.

Drives Debian's ``chromium`` through ``chromedriver``'s W3C WebDriver HTTP API with urllib (no
selenium): the page is served on 127.0.0.1 by a throw-away HTTP server, then loaded twice — as
a page, and inside an ``<iframe sandbox="allow-scripts" srcdoc=...>`` the way the KFP UI's HTML
viewer shows it. ``check_report_in_chromium`` returns the facts (images, requests, console
messages, table contents, screenshot); ``problems`` turns them into failure messages.

    from browser import check_report_in_chromium, chromium_missing_reason, problems
"""

from __future__ import annotations

import base64
import functools
import html
import io
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWER_PATH = "/__kfp_html_viewer__.html"

# Runs in the page (or the iframe): everything the checks need, in one round trip.
PAGE_FACTS_JS = """
const cellText = td => td.textContent.trim();
const table = id => {
  const t = document.getElementById(id);
  if (!t) return null;
  return Array.from(t.querySelectorAll('tr')).map(tr => ({
    attrs: Object.fromEntries(Array.from(tr.attributes).map(a => [a.name, a.value])),
    cells: Array.from(tr.children).map(td => ({
      tag: td.tagName.toLowerCase(), text: cellText(td),
      attrs: Object.fromEntries(Array.from(td.attributes).map(a => [a.name, a.value]))}))
  }));
};
return {
  title: document.title,
  origin: location.origin,
  href: location.href,
  readyState: document.readyState,
  bodyTextLength: document.body ? document.body.innerText.length : 0,
  images: Array.from(document.images).map(im => ({
    alt: im.alt, complete: im.complete, naturalWidth: im.naturalWidth,
    naturalHeight: im.naturalHeight, scheme: im.currentSrc.split(':')[0]})),
  resources: performance.getEntriesByType('resource').map(e => e.name),
  tables: {cells: table('cells'), s2r: table('table-s2r'), r2s: table('table-r2s'),
           comparisons: table('table-comparisons')},
  flags: Array.from(document.querySelectorAll('.flag')).map(e => ({
    text: e.innerText.trim(), title: e.title, visible: e.getBoundingClientRect().height > 0})),
  separated: Array.from(document.querySelectorAll('[data-separated]')).map(e => e.innerText),
  scripts: document.scripts.length,
  // Layout: does each table fit the width its container gives it (no sideways scrolling)?
  layout: {viewport: window.innerWidth, page: document.documentElement.scrollWidth,
    tables: Object.fromEntries(Array.from(document.querySelectorAll('table[id]')).map(t => {
      const box = t.parentElement;
      return [t.id, {right: t.getBoundingClientRect().right, width: t.scrollWidth,
                     room: box.clientWidth}];
    }))},
};
"""

ALL_LOADED_JS = """
return document.readyState === 'complete' &&
  Array.from(document.images).every(im => im.complete);
"""


def chromium_missing_reason() -> str | None:
    """None when Chromium and chromedriver are installed, else why the browser test must skip."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).is_file():
            return (
                f"{path} is not installed (Debian packages chromium and chromium-driver; "
                "scripts/ensure-chromium.sh installs them)"
            )
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Handler(SimpleHTTPRequestHandler):
    """Serves the report folder, the KFP-viewer stand-in page, and records every request."""

    viewer_page = b""
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.requests.append(self.path)
        if self.path == VIEWER_PATH:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(self.viewer_page)))
            self.end_headers()
            self.wfile.write(self.viewer_page)
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean; requests are recorded above


class WebDriver:
    """The few W3C WebDriver commands the checks need, over plain HTTP."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.session = ""

    def call(self, method: str, path: str, body: dict | None = None, timeout: float = 60) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read() or b"{}").get("value")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise RuntimeError(f"chromedriver {method} {path}: HTTP {exc.code}: {detail}") from None

    def start_session(self, user_data_dir: str) -> None:
        capabilities = {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    *CHROMIUM_FLAGS,
                    f"--user-data-dir={user_data_dir}",
                    "--window-size=1280,1600",
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }
        value = self.call("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}})
        self.session = value["sessionId"]

    def s(self, method: str, path: str, body: dict | None = None) -> Any:
        return self.call(method, f"/session/{self.session}{path}", body)

    def execute(self, script: str) -> Any:
        return self.s("POST", "/execute/sync", {"script": script, "args": []})

    def browser_log(self) -> list[dict]:
        return self.s("POST", "/se/log", {"type": "browser"}) or []


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (urllib.error.URLError, ConnectionError, RuntimeError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def _screenshot_facts(png: bytes) -> dict[str, Any]:
    from PIL import Image, ImageStat

    with Image.open(io.BytesIO(png)) as im:
        grey = im.convert("L")
        stat = ImageStat.Stat(grey)
        low, high = grey.getextrema()
        return {
            "format": im.format,
            "size": im.size,
            "grey_stddev": stat.stddev[0],
            "range": (low, high),
        }


def check_report_in_chromium(
    html_path: str | Path,
    screenshot_path: str | Path | None = None,
    sandboxed: bool = True,
    timeout: float = 90,
) -> dict[str, Any]:
    """Open ``html_path`` in headless Chromium; return what loaded, what was requested and logged.

    Keys: ``page`` (facts of the page served at http://127.0.0.1:<port>/<name>), ``sandboxed``
    (the same inside a KFP-viewer-like sandboxed srcdoc iframe, when ``sandboxed``),
    ``console`` (browser log entries), ``console_errors`` (SEVERE ones), ``server_requests``
    (paths the local server saw), ``screenshot`` (path) and ``screenshot_facts``.
    """
    reason = chromium_missing_reason()
    if reason:
        raise RuntimeError(reason)
    html_path = Path(html_path).resolve()
    report_html = html_path.read_text(encoding="utf-8")
    handler = type("Handler", (_Handler,), {"requests": []})
    handler.viewer_page = (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>KFP HTML viewer stand-in</title>'
        '<link rel="icon" href="data:,">'
        '</head><body style="margin:0"><iframe id="viewer" sandbox="allow-scripts" '
        'style="width:100%;height:1500px;border:0" '
        f'srcdoc="{html.escape(report_html, quote=True)}"></iframe></body></html>'
    ).encode()
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(html_path.parent))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    driver_port = _free_port()
    user_data_dir = tempfile.mkdtemp(prefix="tgap-chromium-")
    driver_proc = subprocess.Popen(
        [CHROMEDRIVER, f"--port={driver_port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    driver = WebDriver(driver_port)
    result: dict[str, Any] = {"origin": origin}
    try:
        _wait_for(lambda: driver.call("GET", "/status", timeout=2)["ready"], 20, "chromedriver")
        driver.start_session(user_data_dir)
        driver.s("POST", "/url", {"url": f"{origin}/{html_path.name}"})
        _wait_for(lambda: driver.execute(ALL_LOADED_JS), timeout, "the report and its images")
        result["page"] = driver.execute(PAGE_FACTS_JS)
        png = base64.b64decode(driver.s("GET", "/screenshot"))
        shot = Path(screenshot_path) if screenshot_path else Path(user_data_dir) / "report.png"
        shot.write_bytes(png)
        if not screenshot_path:
            shot = Path(shutil.copy(shot, tempfile.mkdtemp(prefix="tgap-shot-")))
        result["screenshot"] = str(shot)
        result["screenshot_facts"] = _screenshot_facts(png)
        if sandboxed:
            driver.s("POST", "/url", {"url": origin + VIEWER_PATH})
            _wait_for(lambda: driver.execute(ALL_LOADED_JS), timeout, "the viewer stand-in page")
            driver.s("POST", "/frame", {"id": 0})
            _wait_for(
                lambda: driver.execute(ALL_LOADED_JS), timeout, "the report inside the iframe"
            )
            result["sandboxed"] = driver.execute(PAGE_FACTS_JS)
            driver.s("POST", "/frame/parent", {})
        result["console"] = driver.browser_log()
        result["console_errors"] = [e for e in result["console"] if e.get("level") == "SEVERE"]
        result["server_requests"] = list(handler.requests)
    finally:
        if driver.session:
            try:
                driver.s("DELETE", "")
            except (RuntimeError, urllib.error.URLError):
                pass
        driver_proc.terminate()
        try:
            driver_proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            driver_proc.kill()
        server.shutdown()
        server.server_close()
        shutil.rmtree(user_data_dir, ignore_errors=True)
    return result


def problems(result: dict[str, Any]) -> list[str]:
    """Everything wrong with a ``check_report_in_chromium`` result, as readable messages."""
    out = []
    facts = result["screenshot_facts"]
    if facts["format"] != "PNG" or facts["grey_stddev"] < 1.0:
        out.append(f"screenshot {result['screenshot']} is blank or not a PNG: {facts}")
    own = result["origin"]
    for where in ("page", "sandboxed"):
        page = result.get(where)
        if page is None:
            continue
        if page["bodyTextLength"] == 0:
            out.append(f"{where}: the page shows no text")
        for im in page["images"]:
            if not im["complete"] or im["naturalWidth"] <= 0:
                out.append(f"{where}: image {im['alt']!r} did not load")
            if im["scheme"] != "data":
                out.append(f"{where}: image {im['alt']!r} is not inlined (scheme {im['scheme']})")
        for name in page["resources"]:
            if not (name.startswith("data:") or name.startswith(own + "/")):
                out.append(f"{where}: a request left the page: {name}")
    for entry in result["console_errors"]:
        out.append(f"console error: {entry.get('message')}")
    for path in result["server_requests"]:
        name = path.split("?")[0]
        if name not in (VIEWER_PATH, "/favicon.ico") and not name.endswith(".html"):
            out.append(f"the page requested {path} from the server (everything must be inlined)")
    return out
