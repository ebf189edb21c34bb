"""The console (指挥中心工作台) in headless Chromium, driven as its users do: mouse clicks at
the elements' positions, typed text, keys. One browser for the module; each test logs in
afresh (cookies cleared). Screenshots at 1366×768 go to test-artifacts/console/.

- a dispatcher logs in (and stays logged in over a reload), filters the queue to red
  cases, opens one, dispatches it to the suggested department and sees the timeline grow;
  a second dispatcher acts first on another case and the page shows the 412 handling;
- bulk accept of three reported cases, one already accepted elsewhere: two successes and
  one refusal;
- a department handler signs and handles with a photo;
- register lookup: a grid worker reveals a person's ID number with a purpose; an auditor
  finds that reveal in the audit viewer.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import TEST_PASSWORD
from tests.fixtures.areas import G111, S1
from tests.fixtures.browser import Page, needs_chromium
from tests.fixtures.cases import act, report, set_case_times

pytestmark = needs_chromium
SHOTS = "console"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    p = Page(tmp_path_factory.mktemp("chromium"), size=(1366, 768))
    yield p
    p.close()


@pytest.fixture
def console(browser, live_server):
    """The browser at the console's login, with no cookie and no errors yet."""
    browser.send("Network.clearBrowserCookies")
    browser.console_errors.clear()
    browser.base = live_server
    browser.timeout_s = 20
    browser.expected = []  # answers a test provokes on purpose: (status, path)
    yield browser
    browser.eval("0")  # read what the page logged meanwhile
    unexpected = [e for e in browser.console_errors
                  if not any(f"status of {status}" in e and e.endswith(path)
                             for status, path in browser.expected)]
    assert unexpected == []
    assert browser.eval("JSON.stringify(window.consoleState ? consoleState.errors : [])") == "[]"


def open_console(page: Page, fragment: str = "#/queue") -> None:
    page.send("Page.navigate", url=f"{page.base}/console{fragment}")
    page.wait("window.consoleReady === true")


def log_in(page: Page, user, fragment: str = "#/queue") -> None:
    open_console(page, fragment)
    page.wait("!!document.getElementById('login-name')")
    page.click_on("#login-name")
    page.type(user.username)
    page.click_on("#login-password")
    page.type(TEST_PASSWORD)
    page.click_on("#login-submit")
    page.wait("!!document.getElementById('logout')")


def choose(page: Page, select: str, option: str) -> None:
    """Pick `option` in an Element Plus select (its dropdown is a popper on <body>)."""
    page.click(*page.eval(f"""(() => {{
        const box = document.querySelector({json.dumps(select)}).closest('.el-select')
            .getBoundingClientRect();
        return [box.x + box.width / 2, box.y + box.height / 2];
    }})()"""))
    page.wait(f"[...document.querySelectorAll('.el-select-dropdown__item')].some((n) => "
              f"n.getClientRects().length && n.textContent.trim() === {json.dumps(option)} "
              f"&& n.closest('.el-popper').getAnimations({{subtree: true}}).length === 0)")
    page.eval(f"[...document.querySelectorAll('.el-select-dropdown__item')].find((n) => "
              f"n.getClientRects().length && n.textContent.trim() === {json.dumps(option)})"
              f".click()")
    page.wait(f"document.querySelector({json.dumps(select)}).closest('.el-select')"
              f".innerText.includes({json.dumps(option)})")


def queue_codes(page: Page) -> list[str]:
    return page.eval("[...document.querySelectorAll('.queue-table .el-table__body "
                     ".case-link')].map((a) => a.textContent.trim())")


def wait_queue(page: Page) -> None:
    page.wait("window.consoleQueue && !document.querySelector('.queue .el-loading-mask')")
    idle(page)


def idle(page: Page) -> None:
    """No request of the page in flight: the live server shares the test's connection, so
    the test may use the API itself only meanwhile."""
    page.wait("!window.consoleBusy")


def timeline(page: Page) -> list[str]:
    return page.eval("[...document.querySelectorAll('#timeline .el-timeline-item')]"
                     ".map((n) => n.innerText)")


def red(db_session, case: dict) -> None:
    past = datetime.now(UTC) - timedelta(days=2)
    set_case_times(db_session, case["id"], warn_at=past, due_at=past + timedelta(hours=1))


def test_dispatcher_filters_red_dispatches_and_meets_a_412(people, category, department,
                                                          api, db_session, console):
    page, w = console, people.worker
    late, calm, other = (report(w, category, G111, description=d)
                         for d in ("井盖缺失很危险", "路灯不亮", "垃圾满溢"))
    accepted = act(people.dispatcher, late, "accept")
    red(db_session, accepted)
    page.send("Page.navigate", url=f"{page.base}/console")
    page.wait("window.consoleReady === true && !!document.getElementById('login-name')")
    page.screenshot(f"{SHOTS}/login.png")
    log_in(page, people.dispatcher.user)
    wait_queue(page)
    assert set(queue_codes(page)) >= {late["code"], calm["code"], other["code"]}
    # a reload keeps the session (the cookie), not a token the page could read
    page.send("Page.reload")
    page.wait("window.consoleReady === true && !!document.getElementById('logout')")
    assert page.eval("document.cookie") == ""
    assert page.eval("JSON.stringify(localStorage).includes('ey') "
                     "|| JSON.stringify(sessionStorage).includes('ey')") is False
    wait_queue(page)
    assert page.eval("document.querySelector('.badges').innerText").count("待受理") == 1

    choose(page, "#f-light", "红灯")
    page.click_on("#f-search")
    page.wait(f"window.consoleQueue.rows.value.length === 1 && "
              f"window.consoleQueue.rows.value[0].id === {late['id']} && "
              f"document.querySelectorAll('.queue-table .case-link').length === 1")
    assert page.eval("document.querySelector('.queue-table [data-light]').dataset.light") == "red"
    page.screenshot(f"{SHOTS}/queue-red.png")

    page.click_text(".case-link", late["code"])
    page.wait("window.consoleCase && consoleCase.ready")
    assert page.text("#case-code") == late["code"]
    before = len(timeline(page))
    page.click_on("#case-actions [data-action=dispatch]")
    page.wait("!!document.querySelector('[data-form=dispatch]')")
    shown = page.eval("document.querySelector('#form-department').closest('.el-select')"
                      ".innerText")
    assert department.name in shown and "建议" in shown  # the suggested one preselected
    page.click_on("#form-submit")
    page.wait("document.getElementById('case-state').innerText === '已派遣'")
    page.wait(f"document.querySelectorAll('#timeline .el-timeline-item').length > {before}")
    assert "派遣" in timeline(page)[-1] and department.name in timeline(page)[-1]
    page.screenshot(f"{SHOTS}/case-dispatched.png")

    # 412: someone else accepts `calm` between our read and our action
    open_console(page, f"#/cases/{calm['id']}")
    page.wait("window.consoleCase && consoleCase.ready && consoleCase.item.id === "
              f"{calm['id']}")
    page.click_on("#case-actions [data-action=accept]")
    page.wait("!!document.querySelector('[data-form=accept]')")
    idle(page)
    act(api("street_dispatcher", S1), calm, "accept")
    page.expected.append((412, f"/cases/{calm['id']}/actions/accept"))
    page.click_on("#form-submit")
    page.wait("!!document.getElementById('conflict-412')")
    changes = page.eval("document.querySelector('.changes').innerText")
    assert "待受理" in changes and "已受理" in changes
    assert page.text("#case-state") == "已受理"
    page.screenshot(f"{SHOTS}/case-412.png")
    # act again, on the new version
    page.click_on("#case-actions [data-action=dispatch]")
    page.click_on("#form-submit")
    page.wait("document.getElementById('case-state').innerText === '已派遣'")


def test_bulk_accept_two_successes_and_one_refusal(people, category, console):
    page, w = console, people.worker
    cases = [report(w, category, G111, description=f"占道经营{i}") for i in range(3)]
    log_in(page, people.dispatcher.user)
    wait_queue(page)
    idle(page)
    act(people.dispatcher, cases[1], "accept")  # elsewhere, after the queue was read
    for case in cases:
        page.click(*page.eval(f"""(() => {{
            const link = [...document.querySelectorAll('.queue-table .case-link')]
                .find((a) => a.textContent.trim() === {json.dumps(case['code'])});
            const box = link.closest('tr').querySelector('.el-checkbox').getBoundingClientRect();
            return [box.x + box.width / 2, box.y + box.height / 2];
        }})()"""))
    page.wait("document.querySelector('.toolbar').innerText.includes('已选 3')")
    page.click_on("[data-bulk=accept]")
    page.wait("!!document.getElementById('bulk-submit')")
    page.click_on("#bulk-submit")
    page.wait("document.querySelectorAll('[data-result]').length === 3")
    results = page.eval("Object.fromEntries([...document.querySelectorAll('.bulk-results "
                        ".el-table__body tr')].map((tr) => [tr.cells[0].innerText.trim(), "
                        "tr.querySelector('[data-result]').dataset.result]))")
    assert results == {cases[0]["code"]: "ok", cases[1]["code"]: "refused",
                       cases[2]["code"]: "ok"}
    page.screenshot(f"{SHOTS}/bulk-accept.png")
    page.click_on("#bulk-close")
    # the keyboard: ↓ moves the cursor to the second row, Enter opens it
    wait_queue(page)
    page.settle()
    second = page.eval("consoleQueue.rows.value[1].id")
    page.key("ArrowDown", key_code=40)
    page.wait("document.querySelectorAll('.queue-table .cursor-row').length === 1")
    page.key("Enter", key_code=13)
    page.wait(f"window.consoleCase && consoleCase.ready && consoleCase.item.id === {second}")


def test_handler_signs_and_handles_with_a_photo(people, category, console, tmp_path):
    page, w = console, people.worker
    case = act(people.dispatcher, act(people.dispatcher, report(w, category, G111),
                                      "accept"), "dispatch")
    log_in(page, people.handler.user, f"#/cases/{case['id']}")
    page.wait(f"window.consoleCase && consoleCase.ready && consoleCase.item.id === {case['id']}")
    page.click_on("#case-actions [data-action=sign]")
    page.click_on("#form-submit")
    page.wait("document.getElementById('case-state').innerText === '处置中'")
    page.click_on("#case-actions [data-action=handle]")
    page.wait("!!document.querySelector('[data-form=handle]')")
    page.click_on("#form-result")
    page.type("已清运完毕")
    picture = _jpeg(tmp_path / "result.jpg")
    node = page.send("DOM.querySelector", nodeId=page.send("DOM.getDocument")["root"]["nodeId"],
                     selector=".el-upload__input")["nodeId"]
    page.send("DOM.setFileInputFiles", nodeId=node, files=[str(picture)])
    page.wait("document.querySelectorAll('.el-upload-list__item.is-success').length === 1")
    page.click_on("#form-submit")
    page.wait("document.getElementById('case-state').innerText === '已处置'")
    page.wait("document.getElementById('timeline').innerText.includes('处置反馈')")
    page.wait("document.querySelectorAll('.thumb[data-photo]').length >= 1")
    page.screenshot(f"{SHOTS}/case-handled.png")


def _jpeg(path: Path) -> Path:
    from PIL import Image

    Image.new("RGB", (320, 240), (40, 140, 90)).save(path, "JPEG")
    return path


def test_reveal_with_purpose_then_the_auditor_finds_it(people, api, console):
    page, w = console, people.worker
    person = w.person(w.household(w.house(w.building(G111))), name="张伟",
                      id_number="110101202311012176", relation_to_head="head")
    log_in(page, w.user, "#/register")
    page.click_on("#r-search")
    page.wait("document.getElementById('register-table').innerText.includes('张伟')")
    masked = page.text("#register-table")
    assert "110101202311012176" not in masked
    page.click_on(".reveal")
    page.wait("!!document.getElementById('reveal-purpose')")
    page.click_on("#reveal-purpose")
    page.type("核实事件上报人身份")
    page.click_on("#reveal-submit")
    page.wait("!!document.getElementById('reveal-shown')")
    assert "110101202311012176" in page.text("#reveal-shown")
    page.screenshot(f"{SHOTS}/register-reveal.png")

    page.click_on(".el-dialog__headerbtn")
    page.click_on("#logout")
    page.wait("!!document.getElementById('login-name')")
    idle(page)
    auditor = api("auditor")
    log_in(page, auditor.user, "#/audit")
    page.click_on("#a-object")
    page.type(str(person["id"]))
    page.click_on("#a-search")
    page.wait("document.getElementById('audit-table').innerText.includes('核实事件上报人身份')")
    assert "事件处置" in page.text("#audit-table")
    page.screenshot(f"{SHOTS}/audit.png")


def _wait_for_file(folder: Path, suffix: str, page: Page) -> Path:
    page.wait("!window.consoleBusy")
    for _ in range(200):
        done = [f for f in folder.iterdir() if f.suffix == suffix]
        if done:
            return done[0]
        page.eval("new Promise((r) => requestAnimationFrame(() => r(0)))")  # a frame, no sleep
    raise AssertionError(f"no {suffix} in {folder}: {list(folder.iterdir())}")


def test_dashboard_export_map_and_broadcast(people, category, tree, console, tmp_path):
    import openpyxl

    page, d, w = console, people.dispatcher, people.worker
    cases = [report(w, category, G111, description=f"违章停车{i}") for i in range(3)]
    act(d, cases[0], "accept")
    log_in(page, d.user)
    wait_queue(page)
    page.screenshot(f"{SHOTS}/queue.png")

    # the queue's export: the same rows as the API's queue
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    page.send("Browser.setDownloadBehavior", behavior="allow", downloadPath=str(downloads))
    page.click_on("#export")
    sheet = openpyxl.load_workbook(_wait_for_file(downloads, ".xlsx", page)).active
    rows = [[c.value for c in r] for r in sheet.iter_rows()]
    listed = d.ok(d.get("/cases?sort=-reported_at&page_size=100"))
    exported = [next(v for v in row if isinstance(v, str) and v.startswith("3301"))
                for row in rows[1:]]
    assert exported == [c["code"] for c in listed] and len(exported) == 3

    # 统计考核: charts drawn, numbers as /stats/performance says for the same period
    page.click_on("[data-menu='/dashboard']")
    page.wait("window.consoleDashboard && consoleDashboard.ready")
    assert page.eval("document.querySelectorAll('.chart canvas').length") >= 4
    shown = page.eval("Object.fromEntries([...document.querySelectorAll('[data-kpi]')]"
                      ".map((n) => [n.dataset.kpi, n.innerText]))")
    start, end = page.eval("(() => { const f = document.querySelector('.dashboard "
                           ".el-range-input'); return [...document.querySelectorAll("
                           "'.dashboard .el-range-input')].map((i) => i.value); })()")
    last = datetime.fromisoformat(end).date() + timedelta(days=1)
    total = d.ok(d.get(f"/stats/performance?area_id={tree[S1]}&from={start}T00:00:00Z"
                       f"&to={last.isoformat()}T00:00:00Z"))["total"]
    assert shown["reported"] == str(total["reported"]) == "3"
    assert shown["accepted"] == str(total["accepted"]) == "1"
    assert shown["closed"] == str(total["closed"])
    page.screenshot(f"{SHOTS}/dashboard.png")

    # 一张图: the cases drawn by light
    page.click_on("[data-menu='/map']")
    page.wait("window.consoleMap && consoleMap.ready")
    page.wait("consoleMap.map.loaded() && consoleMap.map.areTilesLoaded()")
    assert page.eval("consoleMap.map.querySourceFeatures('scoped', {sourceLayer: 'cases'})"
                     ".length") >= 1
    page.screenshot(f"{SHOTS}/map.png")

    # 发布通知
    page.click_on("[data-menu='/broadcast']")
    page.wait("!!document.getElementById('b-area')")
    choose(page, "#b-area", "西街道")  # the dispatcher's street
    page.click_on("#b-title")
    page.type("台风蓝色预警")
    page.click_on("#b-text")
    page.type("请各网格做好防台准备。")
    page.click_on("#b-send")
    page.wait("!!document.getElementById('b-sent')")
    page.screenshot(f"{SHOTS}/broadcast.png")
