"""The catalogue and guide (办事指南): categories, services, who may manage them."""

from __future__ import annotations

from tests.conftest import assert_error_shape
from tests.fixtures.areas import C11, C21, S1
from tests.fixtures.services import category_id, make_service


def test_the_categories_of_domain_6_are_seeded(people):
    names = {c["name"] for c in people.resident.ok(people.resident.get("/service-categories"))}
    assert {"家政", "就诊", "养老助餐", "法律援助", "出行", "社区活动", "场地预约",
            "办事指南"} <= names


def test_staff_publish_a_guide_that_residents_read(people, tree, db_session):
    guide = make_service(people.staff, tree, db_session, category="guide", booking_mode="none",
                         name="居住证办理", description="新居民申领居住证（最多跑一次）",
                         materials=["身份证", "居住登记凭证", "近期照片"], online=True,
                         online_url="https://zwfw.example.gov.cn/jzz", fee="免费",
                         steps="网上申报 → 窗口核验 → 邮寄送达")
    shown = people.resident.ok(people.resident.get(f"/services/{guide['id']}"))
    assert shown["materials"] == ["身份证", "居住登记凭证", "近期照片"]
    assert shown["max_trips"] == 1 and shown["online"] is True and shown["fee"] == "免费"
    assert shown["opening_hours"] == [{"days": [1, 2, 3, 4, 5], "open": "08:00",
                                       "close": "17:00"}]
    assert abs(shown["location"]["lon"] - 119.91) < 1e-6


def test_staff_manage_only_the_services_of_their_scope(people, tree, db_session):
    make_service(people.staff, tree, db_session, code=C21, status=404)  # another street
    mine = make_service(people.staff, tree, db_session)
    street = make_service(people.dispatcher, tree, db_session, code=S1, name="街道法律援助",
                          category="legal_aid")
    # the street's dispatcher manages the community's service too; C21's staff do not
    changed = people.dispatcher.ok(people.dispatcher.patch(
        f"/services/{mine['id']}", {"fee": "免费", "version": mine["version"]}))
    assert changed["fee"] == "免费" and changed["version"] == mine["version"] + 1
    assert_error_shape(people.staff21.patch(f"/services/{mine['id']}",
                                            {"fee": "1元", "version": changed["version"]}), 404)
    # community staff cannot change the street's own service
    assert_error_shape(people.staff.patch(f"/services/{street['id']}",
                                          {"fee": "1元", "version": street["version"]}), 404)
    # residents do not manage services at all
    response = people.resident.post("/services", {
        "category_id": category_id(db_session, "clinic"), "area_id": tree[C11], "name": "x"})
    assert_error_shape(response, 403)


def test_updates_need_the_current_version(people, tree, db_session):
    service = make_service(people.staff, tree, db_session)
    assert_error_shape(people.staff.patch(f"/services/{service['id']}", {"fee": "1元"}), 428)
    stale = assert_error_shape(people.staff.patch(
        f"/services/{service['id']}", {"fee": "1元", "version": service["version"] + 5}), 412)
    assert stale["current"]["version"] == service["version"]
    people.staff.ok(people.staff.patch(f"/services/{service['id']}", {"fee": "1元"},
                                       headers={"If-Match": f'"{service["version"]}"'}))


def test_an_inactive_service_is_gone_for_residents_but_not_for_its_staff(people, tree,
                                                                          db_session):
    service = make_service(people.staff, tree, db_session)
    people.staff.ok(people.staff.patch(f"/services/{service['id']}",
                                       {"active": False, "version": service["version"]}))
    assert_error_shape(people.resident.get(f"/services/{service['id']}"), 404)
    assert people.staff.ok(people.staff.get(f"/services/{service['id']}"))["active"] is False
    mine = people.staff.ok(people.staff.get("/services?mine=true"))
    assert [s["id"] for s in mine] == [service["id"]]


def test_bad_opening_hours_are_a_422(people, tree, db_session):
    body = make_service(people.staff, tree, db_session, status=422,
                        opening_hours=[{"days": [1], "open": "18:00", "close": "08:00"}])
    assert "opening_hours" in body["errors"]["json"]
