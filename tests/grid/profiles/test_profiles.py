"""Profiles: complete, masked by default, revealed only through the registry's audited path,
key-person data only for roles allowed, scoped, and built with a bounded number of
statements (counted with before_cursor_execute)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import sqlalchemy as sa

from grid.profiles.service import years_before
from server import pii
from tests.conftest import SHANGHAI, assert_error_shape, today_local
from tests.fixtures.areas import C11, G111, G112, D
from tests.fixtures.cases import report
from tests.fixtures.http import at, audit_rows
from tests.fixtures.maps import counting
from tests.fixtures.registry import ID_FEMALE_1988, ID_MALE_2023, ID_MORE

PHONE = "13812345678"

WHY = "purpose_code=verify_identity&purpose="  # a reveal's purpose (code, then text)


def visit(who, **target) -> dict:
    body = {"type": "care", "content": "走访，一切正常", "location": at(G111), **target}
    return who.ok(who.post("/visits", body), 201)


def family(w, members: int = 2, visits: int = 1, id_number: str | None = ID_FEMALE_1988
           ) -> dict:
    """A building, a room, a household with `members` persons (the first the head, with an
    ID number and a phone), and visits to the household."""
    building = w.building(G111)
    house = w.house(building)
    household = w.household(house)
    head = w.person(household, relation_to_head="head", id_number=id_number, phone=PHONE,
                    tags=[{"tag": "elderly_alone"}])
    others = [w.person(household, name=f"成员{i}", relation_to_head="child")
              for i in range(members - 1)]
    for _ in range(visits):
        visit(w, household_id=household["id"])
    return {"building": building, "house": house, "household": household, "head": head,
            "others": others}


def test_person_profile_is_complete_and_masked(people, category, api, tree):
    w = people.worker
    f = family(w)
    resident = api("resident", C11, phone=PHONE)  # the person's own resident account
    mine = report(resident, category, G111, location=at(G111, dx=0.003))
    near = report(w, category, G111)  # at the building (same point)
    body = w.ok(w.get(f"/persons/{f['head']['id']}/profile"))
    assert body["person"]["id_number"] == pii.mask_id_number(ID_FEMALE_1988)
    assert body["person"]["phone"] == pii.mask_phone(PHONE)
    assert PHONE not in str(body) and ID_FEMALE_1988 not in str(body)
    assert body["revealed"] is None
    assert body["household"]["id"] == f["household"]["id"]
    assert [m["id"] for m in body["members"]] == [f["others"][0]["id"]]
    assert body["house"]["id"] == f["house"]["id"]
    assert body["building"]["id"] == f["building"]["id"]
    assert body["grid"]["area"]["code"] == G111
    assert [x["user_id"] for x in body["grid"]["workers"]] == [w.user.id]
    assert [t["tag"] for t in body["tags"]] == ["elderly_alone"]
    assert len(body["visits"]) == 1
    relation = {c["id"]: c["relation"] for c in body["cases"]}
    assert relation == {mine["id"]: "reported", near["id"]: "nearby"}


def test_reveal_goes_through_the_registry_and_is_audited(people, db_session):
    w = people.worker
    f = family(w)
    url = f"/persons/{f['head']['id']}/profile"
    assert_error_shape(w.get(f"{url}?reveal=true"), 422)  # a purpose is required
    body = w.ok(w.get(f"{url}?reveal=true&{WHY}核实低保申请"))
    assert body["revealed"] == {"id_number": ID_FEMALE_1988, "phone": PHONE}
    rows = audit_rows(db_session, action="person_pii_read", object_id=str(f["head"]["id"]))
    assert len(rows) == 1 and rows[0].purpose == "核实低保申请"
    # a role without person:read_pii is refused
    assert_error_shape(people.dispatcher.get(f"{url}?reveal=true&{WHY}核实低保申请"), 403)


def test_key_person_tags_only_for_roles_allowed_and_audited(people, api, db_session, tree):
    w = people.worker
    f = family(w)
    chief = api("grid_chief", G111)
    chief.ok(chief.post(f"/persons/{f['head']['id']}/tags", {"tag": "community_correction"}),
             201)
    url = f"/persons/{f['head']['id']}/profile"
    assert [t["tag"] for t in w.ok(w.get(url))["tags"]] == ["elderly_alone"]
    assert audit_rows(db_session, action="person_profile_read") == []
    tags = [t["tag"] for t in chief.ok(chief.get(url))["tags"]]
    assert sorted(tags) == ["community_correction", "elderly_alone"]
    assert len(audit_rows(db_session, action="person_profile_read")) == 1
    # the grid profile counts key persons for the chief only
    assert w.ok(w.get(f"/areas/{tree[G111]}/profile"))["key_persons"] is None
    counts = chief.ok(chief.get(f"/areas/{tree[G111]}/profile"))
    assert counts["key_persons"]["community_correction"] == 1
    assert counts["care_groups"]["elderly_alone"] == 1


def test_profiles_are_scoped(people, tree):
    f = family(people.worker)
    other = people.worker2  # G211
    for url in (f"/persons/{f['head']['id']}/profile",
                f"/households/{f['household']['id']}/profile",
                f"/buildings/{f['building']['id']}/profile",
                f"/areas/{tree[G111]}/profile"):
        assert_error_shape(other.get(url), 404)


def test_household_and_building_profiles(people, category, tree):
    w = people.worker
    f = family(w, members=3)
    w.house(f["building"], room="302", use="empty")
    org = w.organisation(G111, building_id=f["building"]["id"])
    visit(w, organisation_id=org["id"])
    case = report(w, category, G111)
    body = w.ok(w.get(f"/households/{f['household']['id']}/profile"))
    assert body["house"]["id"] == f["house"]["id"] and len(body["members"]) == 3
    assert body["members"][0]["relation_to_head"] == "head"
    assert body["members"][0]["phone"] == pii.mask_phone(PHONE)
    assert len(body["visits"]) == 1 and [c["id"] for c in body["cases"]] == [case["id"]]
    body = w.ok(w.get(f"/buildings/{f['building']['id']}/profile"))
    assert body["occupancy"] == {"rooms": 2, "occupied": 1, "empty": 1, "households": 1,
                                 "persons": 3, "by_use": {"owner_occupied": 1, "empty": 1}}
    assert [o["id"] for o in body["organisations"]] == [org["id"]]
    assert [h["id"] for h in body["households"]] == [f["household"]["id"]]
    assert len(body["visits"]) == 2 and body["cases"][0]["relation"] == "nearby"


def test_codes_come_with_their_chinese_labels(people, category, api, tree):
    """A Chinese console shows 住宅, not `residential`: each code field has its `_label`
    next to it, each code → count map its labels, and the codes themselves are unchanged."""
    w = people.worker
    f = family(w)
    org = w.organisation(G111, building_id=f["building"]["id"], kind="individual_business")
    case = report(w, category, G111)
    body = w.ok(w.get(f"/buildings/{f['building']['id']}/profile"))
    b = body["building"]
    assert (b["use"], b["use_label"]) == ("residential", "住宅")
    assert body["rooms"][0]["house"]["use_label"] == "自住"
    assert (body["households"][0]["type"], body["households"][0]["type_label"]) == (
        "registered", "户籍户")
    assert [(o["id"], o["kind_label"]) for o in body["organisations"]] == [
        (org["id"], "个体工商户")]
    assert body["occupancy"]["by_use"] == {"owner_occupied": 1}
    assert body["labels"]["by_use"]["owner_occupied"] == "自住"
    row = body["cases"][0]
    assert (row["state"], row["state_label"]) == ("reported", "待受理")
    assert row["state_label"] == w.ok(w.get(f"/cases/{case['id']}"))["state_label"]
    person = w.ok(w.get(f"/persons/{f['head']['id']}/profile"))["person"]
    assert (person["population_type"], person["population_type_label"]) == (
        "registered", "户籍人口")
    # the register's own endpoints show the same labels
    assert w.ok(w.get(f"/buildings/{b['id']}"))["use_label"] == "住宅"
    area = w.ok(w.get(f"/areas/{tree[G111]}/profile"))
    assert area["population"]["by_type"]["registered"] == 2
    assert area["labels"]["by_type"]["registered"] == "户籍人口"
    assert area["labels"]["care_groups"]["elderly_alone"] == "独居老人"
    assert "key_persons" not in area["labels"]  # no key-person counts, no labels for them
    chief = api("grid_chief", G111)
    labels = chief.ok(chief.get(f"/areas/{tree[G111]}/profile"))["labels"]
    assert labels["key_persons"]["community_correction"] == "社区矫正"


def test_grid_profile_numbers_and_roll_up(people, category, api, tree):
    w = people.worker
    f = family(w, members=2, visits=1)
    w.person(f["household"], name="小孙", id_number=ID_MALE_2023, relation_to_head="grandchild")
    report(w, category, G111)
    other = api("grid_worker", G112)
    other.person(None, name="外来人员", population_type="floating", location=at(G112))
    body = w.ok(w.get(f"/areas/{tree[G111]}/profile"))
    assert body["population"]["total"] == 3
    assert body["population"]["by_type"]["registered"] == 3
    assert body["population"]["by_age_sex"]["0-17"]["M"] == 1
    today = today_local()  # the server's day (Beijing), not the machine's
    age = today.year - 1988 - ((today.month, today.day) < (6, 1))  # born 1988-06-01
    assert body["population"]["by_age_sex"]["18-59"]["F"] == (1 if age <= 59 else 0)
    assert body["population"]["by_age_sex"]["unknown"]["?"] == 1
    assert body["households"] == 1 and body["buildings"] == 1 and body["open_cases"] == 1
    assert body["visit_coverage"] == {"days": 30, "visits": 1, "households_visited": 1,
                                      "rate": 1.0}
    assert [x["user_id"] for x in body["workers"]] == [w.user.id]
    # the community rolls both grids up for its chief; the worker sees only their grid
    chief = api("grid_chief", C11)
    body = chief.ok(chief.get(f"/areas/{tree[C11]}/profile"))
    assert body["population"]["total"] == 4
    assert body["population"]["by_type"]["floating"] == 1
    assert {c["code"]: c["population"] for c in body["children"]} == {G111: 3, G112: 1}
    mine = w.ok(w.get(f"/areas/{tree[C11]}/profile"))
    assert mine["population"]["total"] == 3
    district = api("district_admin", D)
    body = district.ok(district.get(f"/areas/{tree[D]}/profile"))
    assert body["population"]["total"] == 4 and body["open_cases"] == 1


def _statements(app, who, url: str) -> int:
    with counting(app) as seen:
        who.ok(who.get(url))
    return len(seen)


def test_statement_counts_do_not_grow_with_the_data(people, category, app, tree):
    w = people.worker
    small = family(w, members=1, visits=1)
    big = family(w, members=6, visits=5, id_number=ID_MORE[0])
    for _ in range(4):
        report(w, category, G111)
    for kind, key in (("persons", "head"), ("households", "household"),
                      ("buildings", "building")):
        n_small = _statements(app, w, f"/{kind}/{small[key]['id']}/profile")
        n_big = _statements(app, w, f"/{kind}/{big[key]['id']}/profile")
        assert n_small == n_big <= 16, (kind, n_small, n_big)
    n_grid = _statements(app, w, f"/areas/{tree[G111]}/profile")
    assert n_grid <= 10
    for _ in range(3):
        family(w, members=3, id_number=None)
    assert _statements(app, w, f"/areas/{tree[G111]}/profile") == n_grid


def test_another_module_can_plug_a_section_in(people):
    """How the services module adds a person's bookings."""
    from grid.profiles import service

    f = family(people.worker)
    section = ("bookings", lambda s, actor, person: [{"person_id": person.id}])
    service.profile_sections["person"].append(section)
    try:
        body = people.worker.ok(people.worker.get(f"/persons/{f['head']['id']}/profile"))
    finally:
        service.profile_sections["person"].remove(section)
    assert body["bookings"] == [{"person_id": f["head"]["id"]}]


def test_person_profile_lists_their_bookings_to_the_staff_who_manage_them(
        people, api, tree, db_session, app):
    """Bookings (services module) reach the person through their resident account (the
    phone); the booking rule decides who sees them: the community's staff who manage the
    service, not a grid worker. Still one statement more, whatever the number."""
    from datetime import timedelta

    from tests.fixtures.services import add_slot, book, make_service

    f = family(people.worker)
    resident = api("resident", C11, phone=PHONE)
    staff = api("community_staff", C11)
    service = make_service(staff, tree, db_session, name="助餐服务")
    first = book(resident, add_slot(db_session, service["id"], timedelta(days=2)))
    url = f"/persons/{f['head']['id']}/profile"
    body = staff.ok(staff.get(url))
    assert [(b["id"], b["service"], b["state"]) for b in body["bookings"]] == \
        [(first["id"], "助餐服务", "booked")]
    booking = body["bookings"][0]
    assert booking["starts_at"] == first["starts_at"] and booking["ends_at"] > booking["starts_at"]
    assert "note" not in booking and "address" not in booking
    assert people.worker.ok(people.worker.get(url))["bookings"] == []
    n_one = _statements(app, staff, url)
    book(resident, add_slot(db_session, service["id"], timedelta(days=3)))
    assert len(staff.ok(staff.get(url))["bookings"]) == 2
    assert _statements(app, staff, url) == n_one


def test_visit_coverage_counts_a_members_visit_within_the_period(people, db_session, tree,
                                                                monkeypatch):
    """A household counts as visited when it or one of its members was visited in the
    last 30 days (the first of them included, from its midnight in Beijing); older visits
    do not."""
    from server import clock

    pinned = clock.now()  # one day for the test and the server, even across midnight
    monkeypatch.setattr(clock, "now", lambda: pinned)
    first_day = datetime.combine(pinned.astimezone(SHANGHAI).date() - timedelta(days=30),
                                 time.min, SHANGHAI)
    w = people.worker
    member_visited = family(w, members=2, visits=0)
    visit(w, person_id=member_visited["others"][0]["id"])
    on_the_first_day = family(w, members=1, visits=1, id_number=None)
    too_old = family(w, members=1, visits=1, id_number=None)
    family(w, members=1, visits=0, id_number=None)
    db_session.execute(sa.text("UPDATE visits SET visited_at = :at WHERE household_id = :h"),
                       [{"at": first_day + timedelta(minutes=1),
                         "h": on_the_first_day["household"]["id"]},
                        {"at": first_day - timedelta(minutes=1), "h": too_old["household"]["id"]}])
    body = w.ok(w.get(f"/areas/{tree[G111]}/profile"))
    assert body["visit_coverage"] == {"days": 30, "visits": 2, "households_visited": 2,
                                      "rate": 0.5}


def test_age_bands_turn_on_the_birthday_as_age_counts(db_session):
    """The bands compare birth dates with the day so many years before today: the same
    band as PostgreSQL's age() for every birth date around each limit, 29 February too."""
    for today in (date(2024, 2, 29), date(2025, 2, 28), date(2025, 3, 1), date(2026, 12, 2),
                  date(2028, 2, 29)):
        for years in (18, 60, 80):
            limit = years_before(today, years)
            wrong = db_session.scalar(sa.text(
                "SELECT count(*) FROM generate_series(CAST(:limit AS date) - 800, "
                "CAST(:limit AS date) + 800, interval '1 day') AS g(bd) "
                "WHERE (date_part('year', age(CAST(:today AS date), g.bd::date)) <= :hi) "
                "IS DISTINCT FROM (g.bd::date > :limit)"),
                {"limit": limit, "today": today, "hi": years - 1})
            assert wrong == 0, (today, years)
