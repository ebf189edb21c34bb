"""Search: text (Chinese, pg_trgm), category, open now, nearest first from a point in any
crs, and what serves the resident's community unless they ask otherwise."""

from __future__ import annotations

from geo import crs as crs_mod
from server import clock
from tests.conftest import SHANGHAI
from tests.fixtures.areas import C11, C12, C21, S1
from tests.fixtures.http import at
from tests.fixtures.services import category_id, make_service


def ids(response) -> list[int]:
    assert response.status_code == 200, response.get_json()
    return [s["id"] for s in response.get_json()]


def test_text_search_finds_chinese_names_and_descriptions(people, tree, db_session):
    meals = make_service(people.staff, tree, db_session, category="elderly_meals",
                         name="长者食堂助餐", description="为60岁以上老人提供午餐，可送餐上门")
    clinic = make_service(people.staff, tree, db_session)
    r = people.resident
    assert ids(r.get("/services?q=助餐")) == [meals["id"]]
    assert ids(r.get("/services?q=送餐上门")) == [meals["id"]]  # in the description
    assert ids(r.get("/services?q=慢病随访")) == [clinic["id"]]
    assert ids(r.get("/services?q=100%25")) == []  # LIKE wildcards are literal
    cat = category_id(db_session, "elderly_meals")
    assert ids(r.get(f"/services?category_id={cat}")) == [meals["id"]]


def test_nearest_first_from_a_gcj02_point(people, tree, db_session):
    # three points of one street, west to east, all serving the resident (the street's)
    west = make_service(people.dispatcher, tree, db_session, code=S1, name="西",
                        location=at(C11, dx=-0.008))
    middle = make_service(people.dispatcher, tree, db_session, code=S1, name="中",
                          location=at(C11))
    east = make_service(people.dispatcher, tree, db_session, code=S1, name="东",
                        location=at(C11, dx=0.008))
    # the resident's phone speaks GCJ-02 (高德/腾讯): a point just east of `east`
    lon, lat = crs_mod.from_wgs84(119.9185, 30.015, "gcj02")
    response = people.resident.get(f"/services?near={lon},{lat}&crs=gcj02")
    assert ids(response) == [east["id"], middle["id"], west["id"]]
    distances = [s["distance_m"] for s in response.get_json()]
    assert distances == sorted(distances) and distances[0] < 100
    assert response.get_json()[0]["location"]["crs"] == "gcj02"  # answered in the asked crs
    # a radius keeps only what is within it
    assert ids(people.resident.get(f"/services?near={lon},{lat},500&crs=gcj02")) == [east["id"]]
    # the same point unconverted (as if it were WGS-84) is ~500 m off: a different answer
    shifted = people.resident.get(f"/services?near={lon},{lat},100")
    assert ids(shifted) == []


def test_residents_see_what_serves_their_community_unless_they_ask(people, tree, db_session):
    own = make_service(people.staff, tree, db_session, name="北社区服务")
    street = make_service(people.dispatcher, tree, db_session, code=S1, name="街道服务")
    south = make_service(people.dispatcher, tree, db_session, code=C12, name="南社区服务")
    east = make_service(people.staff21, tree, db_session, code=C21, name="东社区服务")
    assert set(ids(people.resident.get("/services"))) == {own["id"], street["id"]}
    assert set(ids(people.resident21.get("/services"))) == {east["id"]}
    everywhere = set(ids(people.resident.get("/services?everywhere=true")))
    assert {own["id"], street["id"], south["id"], east["id"]} <= everywhere
    # staff search the whole catalogue
    assert {own["id"], east["id"]} <= set(ids(people.staff.get("/services")))


def test_open_now_follows_the_opening_hours(people, tree, db_session, monkeypatch):
    pinned = clock.now()  # one instant for the test and the server, even at 23:59
    monkeypatch.setattr(clock, "now", lambda: pinned)
    now = pinned.astimezone(SHANGHAI)
    today = now.isoweekday()
    other = today % 7 + 1
    always = make_service(people.staff, tree, db_session, name="全天", closed_on_holidays=False,
                          opening_hours=[{"days": [today], "open": "00:00", "close": "23:59"}])
    make_service(people.staff, tree, db_session, name="别的日子",
                 opening_hours=[{"days": [other], "open": "00:00", "close": "23:59"}])
    make_service(people.staff, tree, db_session, name="不开门", opening_hours=[])
    expected = [always["id"]] if now.strftime("%H:%M") < "23:59" else []
    assert ids(people.resident.get("/services?open_now=true")) == expected


def test_bad_search_input_is_a_422(people):
    assert people.resident.get("/services?near=119.9").status_code == 422
    assert people.resident.get("/services?near=119.9,30.0,0").status_code == 422
    assert people.resident.get("/services?near=119.9,30.0&crs=mars").status_code == 422
