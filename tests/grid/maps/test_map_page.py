"""The map page in headless Chromium (driven over the DevTools protocol): log in through
the page's form, load a grid's map from the API's own tiles, check what MapLibre loaded
and rendered, and the grid card.

Needs Chromium (Debian: `apt-get install chromium`); skipped without it. The app is served
by a single-threaded werkzeug server on the test's own connection, so the page sees the
rows this test made inside its rolled-back transaction.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import TEST_PASSWORD
from tests.grid.areas.conftest import G111, G211
from tests.grid.maps.conftest import at, report

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser",
                                                         "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium")
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"


@pytest.fixture
def live_server(app):
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


class Page:
    """One Chromium tab over the DevTools protocol (websocket-client)."""

    def __init__(self, tmp: Path) -> None:
        import websocket

        self.process = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--no-first-run",
             "--remote-debugging-port=0", f"--user-data-dir={tmp}", "--window-size=1280,800",
             "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "about:blank"],
            # its own process group: Debian's `chromium` is a shell script that does not
            # exec, so terminating the script alone would leave the browser running
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            # its own config directory: every Chromium of a user flocks the same
            # ~/.config/chromium/Crash Reports/settings.dat, and one stuck browser
            # elsewhere would hold this one at startup
            env={**os.environ, "XDG_CONFIG_HOME": str(tmp / "config")})
        port_file = tmp / "DevToolsActivePort"
        for _ in range(300):
            if port_file.exists() and port_file.read_text().strip():
                break
            time.sleep(0.1)
        else:
            self._stop()
            raise AssertionError("Chromium did not open its DevTools port within 30 s")
        port = int(port_file.read_text().split()[0])
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30)
        self.next_id = 0
        self.console_errors: list[str] = []  # console.error, uncaught exceptions, failed loads
        self.send("Runtime.enable")
        self.send("Log.enable")

    def send(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message["result"]
            self._event(message.get("method"), message.get("params", {}))

    def _event(self, method: str | None, params: dict) -> None:
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.console_errors.append(details.get("exception", {}).get("description")
                                       or details["text"])
        elif method == "Runtime.consoleAPICalled" and params["type"] == "error":
            self.console_errors.append(" ".join(str(a.get("value", a.get("description")))
                                                for a in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.console_errors.append(f"{params['entry']['text']} {params['entry'].get('url')}")

    def eval(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def wait(self, expression: str, timeout_s: float = 90.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            # not there yet (the page is still loading) counts as false
            value = self.eval(f"(() => {{ try {{ return {expression}; }} "
                              f"catch (e) {{ return false; }} }})()")
            if value:
                return value
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {expression}: "
                             f"{self.eval('JSON.stringify(window.gridMap && gridMap.errors)')}")

    def screenshot(self, name: str) -> None:
        """What the street office would see, kept for people to look at (git-ignored)."""
        shot = self.send("Page.captureScreenshot", format="png")["data"]
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / name).write_bytes(base64.b64decode(shot))

    def close(self) -> None:
        self.ws.close()
        self._stop()

    def _stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(10)


@pytest.fixture
def page(tmp_path):
    p = Page(tmp_path)
    yield p
    p.close()


def log_in(page: Page, url: str, user) -> None:
    """Open the page, log in through its form, wait until the map has drawn its tiles."""
    page.send("Page.navigate", url=url)
    page.wait("!document.getElementById('login').hidden")
    page.eval(f"""(() => {{
        const form = document.getElementById('login');
        form.login.value = {json.dumps(user.username)};
        form.password.value = {json.dumps(TEST_PASSWORD)};
        form.requestSubmit();
    }})()""")
    page.wait("window.gridMap.ready")
    assert page.eval("gridMap.errors") == []


def test_the_map_page_shows_the_workers_grid(people, category, tree, live_server, page):
    w, other = people.worker, people.worker2
    building = w.building(G111)
    w.person(w.household(w.house(building)), relation_to_head="head")
    mine = report(w, category, G111, location=at(G111, dx=0.001))
    theirs = report(other, category, G211)
    log_in(page, f"{live_server}/map?area={tree[G111]}", w.user)
    assert page.eval("gridMap.map.getZoom()") >= 14  # a grid fills the view: no aggregates
    loaded = page.eval("gridMap.map.querySourceFeatures('scoped', {sourceLayer: 'cases'})"
                       ".map(f => f.properties.id)")
    assert mine["id"] in loaded and theirs["id"] not in loaded
    rendered = page.eval("gridMap.map.queryRenderedFeatures({layers: ['cases-points']})"
                         ".map(f => f.properties.id)")
    assert mine["id"] in rendered
    assert page.eval("gridMap.map.queryRenderedFeatures({layers: ['grids-fill']}).length") > 0
    page.screenshot("map-page.png")
    card = page.eval("document.getElementById('card').innerText")
    assert G111 in card and "测试用户" in card and mine["code"] in card
    assert page.eval("document.getElementById('card-counts').innerText").split() \
        [:4] == ["户数", "1", "人口", "1"]
    assert page.eval("gridMap.errors") == [] and page.console_errors == []
