"""The map page in headless Chromium (driven over the DevTools protocol): log in through
the page's form, load a grid's map from the API's own tiles, check what MapLibre loaded
and rendered, and the grid card; click a case, a building and a grid's point as a user
does (mouse events at their rendered positions) and follow the popups' links to the
records' pages in the side panel.

Needs Chromium (Debian: `apt-get install chromium`); skipped without it. The browser and
the live server are tests/fixtures/browser.py's.
"""

from __future__ import annotations

import json

from tests.conftest import TEST_PASSWORD
from tests.fixtures.areas import G111, G211
from tests.fixtures.browser import Page, needs_chromium  # fixtures `page`, `live_server`
from tests.fixtures.cases import report
from tests.fixtures.http import at

pytestmark = needs_chromium


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


def facts(page: Page, selector: str) -> dict[str, str]:
    """The key facts (dt → dd) shown inside `selector`."""
    return page.eval(f"""Object.fromEntries([...document.querySelectorAll(
        {json.dumps(selector + " dt")})].map((dt) => [dt.textContent,
                                                     dt.nextElementSibling.textContent]))""")


def test_popups_lead_to_the_case_building_and_grid_pages(people, category, tree, live_server,
                                                         page):
    w = people.worker
    # a name typed with markup in it: the page shows it as typed, never as HTML
    building = w.building(G111, name="3幢<b>东</b>", floors=6)
    w.person(w.household(w.house(building, room="301"), household_no="A-301"), name="王秀英",
             relation_to_head="head")
    household = w.household(w.house(building, room="302"), household_no="A-302")
    w.person(household, name="李建国", relation_to_head="head")
    w.person(household, name="李小明", relation_to_head="child",
             id_number="110101202311012176")  # a boy born in 2023
    w.organisation(G111, name="富春便利店", kind="individual_business", employees=3,
                   building_id=building["id"], location=at(G111, dy=0.0004))
    case_at = at(G111, dx=0.0004)  # ~40 m east of the building: one of its cases nearby
    case = report(w, category, G111, location=case_at, address="江滨路3幢东侧")
    log_in(page, f"{live_server}/map?area={tree[G111]}", w.user)

    # a case: its popup, then 事件详情 in the panel
    x, y = page.at_lonlat(case_at["lon"], case_at["lat"])
    page.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
    assert page.eval("gridMap.map.getCanvas().style.cursor") == "pointer"
    page.click(x, y)
    page.wait("!!document.querySelector('.maplibregl-popup')")
    popup = page.text(".maplibregl-popup")
    assert "测试垃圾" in popup and "待受理" in popup and case["code"] in popup
    assert "超期" not in popup
    page.click_text(".maplibregl-popup a", "事件详情")
    page.wait("document.getElementById('detail-body').innerText.includes('路边有暴露垃圾')")
    shown = facts(page, "#detail-body")
    assert shown["编号"] == case["code"] and shown["状态"] == "待受理"
    assert shown["地址"] == "江滨路3幢东侧" and shown["超期"] == "否"
    page.screenshot("map-page-case.png")

    # a building: its popup with its counts, then 楼栋画像
    x, y = page.at_lonlat(building["location"]["lon"], building["location"]["lat"])
    page.click(x, y)
    page.wait("document.querySelector('.maplibregl-popup').innerText.includes('楼栋画像')")
    popup = page.text(".maplibregl-popup")
    assert "3幢<b>东</b>" in popup
    assert page.eval("document.querySelectorAll('.maplibregl-popup b').length") == 0
    assert facts(page, ".maplibregl-popup") == {"用途": "residential", "层数": "6",
                                                "户数": "2", "人数": "3"}
    page.screenshot("map-page-popup.png")
    page.click_text(".maplibregl-popup a", "楼栋画像")
    page.wait("document.getElementById('detail-body').innerText.includes('房屋与居住')")
    shown = facts(page, "#detail-body")
    assert (shown["房屋"], shown["有人住"], shown["空置"], shown["户数"], shown["人数"]) == \
        ("2", "2", "0", "2", "3")
    # codes shown as the API labels them in Chinese
    assert (shown["用途"], shown["房屋用途"]) == ("住宅", "自住 2")
    panel = page.text("#detail-body")
    assert "A-301" in panel and "A-302" in panel and "富春便利店" in panel
    assert "A-301 · 户籍户" in panel and "个体工商户" in panel
    assert "residential" not in panel and "registered" not in panel
    assert case["code"] in panel and "待受理" in panel  # 周边事件
    assert "测试用户" in panel  # the grid's worker
    page.screenshot("map-page-building.png")

    # back to the grid card, and its 网格画像
    page.click_text("#detail button", "‹ 返回")
    assert page.eval("document.getElementById('detail').hidden") is True
    page.click_text("#card a", "网格画像")
    page.wait("document.getElementById('detail-body').innerText.includes('走访覆盖')")
    shown = facts(page, "#detail-body")
    assert (shown["人口"], shown["户数"], shown["楼栋"], shown["单位"], shown["未办结事件"],
            shown["超期事件"]) == ("3", "2", "1", "1", "1", "0")
    assert (shown["户籍人口"], shown["流动人口"]) == ("3", "0")
    assert "测试用户" in page.text("#detail-body")
    ages = page.eval("[...document.querySelectorAll('#detail-body .ages tr')]"
                     ".map((tr) => tr.innerText.split(/\\s+/).join(' '))")
    assert "0-17 1 0 0" in ages and "unknown 0 0 2" in ages
    page.screenshot("map-page-area-profile.png")

    # zoomed out, a grid's point: its name and counts, and its card
    page.eval("new Promise((done) => { gridMap.map.jumpTo({zoom: 12}); "
              "gridMap.map.once('idle', () => done(true)); })")
    lon, lat = page.eval("gridMap.map.queryRenderedFeatures({layers: ['cases-per-grid']})"
                         ".find((f) => f.properties.code === " + json.dumps(G111) + ")"
                         ".geometry.coordinates")
    page.click(*page.at_lonlat(lon, lat))
    page.wait("document.querySelector('.maplibregl-popup').innerText.includes('网格卡片')")
    assert "北社区第1网格" in page.text(".maplibregl-popup")
    assert facts(page, ".maplibregl-popup") == {"楼栋": "1", "未办结事件": "1", "超期事件": "0"}
    page.screenshot("map-page-grid-popup.png")
    page.click_text(".maplibregl-popup a", "网格卡片")
    page.wait("!document.getElementById('card').hidden && gridMap.map.getZoom() >= 14")
    assert G111 in page.text("#card-title")

    page.eval("0")  # read what the page logged meanwhile
    assert page.eval("gridMap.errors") == [] and page.console_errors == []
