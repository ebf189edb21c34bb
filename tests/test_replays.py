"""Phones resend: one answer rule for every create that takes a client_uuid.

The first request answers 201 with the new record; the same client_uuid with the same
content answers 200 with the original record (the same id and version) and
`Idempotent-Replay: true`, and stores nothing twice (server.idempotency.create_answer).
Before this rule, register creates, visits and broadcasts answered 201 to a replay while
cases, bookings and service requests answered 200. (Open311's replay: tests/grid/open311.)
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.fixtures.areas import C11, G111
from tests.fixtures.http import Api, at, new_uuid
from tests.fixtures.services import add_slot, make_service
from tests.fixtures.users import make_user  # noqa: F401 - fixture (tree, api…: tests/fixtures)


def _registry(kind: str, body: dict):
    def make(api, **_):
        worker = api("grid_worker", G111)
        if kind == "houses":
            body["building_id"] = worker.building()["id"]
        return worker, f"/{kind}", body
    return make


def _visit(api, **_):
    worker = api("grid_worker", G111)
    person = worker.person(name="王秀英")
    return worker, "/visits", {"person_id": person["id"], "type": "care", "content": "走访",
                               "location": at(G111)}


def _case(api, category, **_):
    return api("resident", C11), "/cases", {
        "category_id": category.id, "location": at(G111), "description": "路边有暴露垃圾",
        "attributes": {"size": "small"}}


def _booking(api, tree, db_session, **_):
    service = make_service(api("community_staff", C11), tree, db_session)
    slot = add_slot(db_session, service["id"], timedelta(days=2))
    return api("resident", C11), "/bookings", {"slot_id": slot, "note": "复诊"}


def _service_request(api, tree, db_session, **_):
    service = make_service(api("community_staff", C11), tree, db_session,
                           booking_mode="request", name="上门维修")
    return api("resident", C11), f"/services/{service['id']}/requests", {"note": "水管漏水"}


def _broadcast(api, tree, **_):
    return api("community_staff", C11), "/broadcasts", {
        "area_id": tree[C11], "level": "info", "title": "停水通知", "text": "明日停水"}


CREATES = {
    "persons": _registry("persons", {"name": "王秀英", "location": at(G111)}),
    "households": _registry("households", {"type": "registered", "location": at(G111)}),
    "houses": _registry("houses", {"unit": "1单元", "room": "301"}),
    "buildings": _registry("buildings", {"name": "3幢", "location": at(G111)}),
    "organisations": _registry("organisations", {"name": "富春制衣有限公司",
                                                 "location": at(G111)}),
    "visits": _visit,
    "cases": _case,
    "bookings": _booking,
    "service requests": _service_request,
    "broadcasts": _broadcast,
}


@pytest.mark.parametrize("create", CREATES)
def test_a_replay_answers_200_with_the_original_record(create, api, tree, db_session,
                                                       category):
    who, url, body = CREATES[create](api=api, tree=tree, db_session=db_session,
                                     category=category)
    body = {**body, "client_uuid": new_uuid()}
    first = who.post(url, body)
    assert first.status_code == 201, first.get_json()
    assert "Idempotent-Replay" not in first.headers

    again = who.post(url, body)
    assert again.status_code == 200, again.get_json()
    assert again.headers["Idempotent-Replay"] == "true"
    original, replay = first.get_json(), again.get_json()
    assert (replay["id"], replay.get("version")) == (original["id"], original.get("version"))

    changed = who.post(url, {**body, **_other_content(create)})
    assert changed.status_code == 409, changed.get_json()


def _other_content(create: str) -> dict:
    return {"cases": {"description": "另一件事"}, "bookings": {"note": "另一件事"},
            "service requests": {"note": "另一件事"}, "broadcasts": {"title": "另一件事"},
            "visits": {"content": "另一件事"}, "houses": {"room": "302"}}.get(
        create, {"name": "另一个名字"} if create != "households" else {"type": "non_registered"})


def test_a_replayed_sync_create_is_a_200_like_everywhere(api):
    worker: Api = api("grid_worker", G111)
    item = {"op": "create", "type": "building", "client_uuid": new_uuid(),
            "data": {"name": "3幢", "location": at(G111)}}
    first = worker.ok(worker.post("/sync/push", {"items": [item]}))["results"][0]
    again = worker.ok(worker.post("/sync/push", {"items": [item]}))["results"][0]
    assert (first["status"], again["status"]) == (201, 200), (first, again)
    assert again["body"]["id"] == first["body"]["id"]


def test_the_document_shows_the_replay_answer(client):
    """Every create that takes a client_uuid documents its 200 replay beside the 201."""
    doc = client.get("/api/openapi.json").get_json()
    schemas = doc["components"]["schemas"]
    missing = []
    for path, item in doc["paths"].items():
        operation = item.get("post")
        if not operation or path == "/attachments":  # multipart: a form field, see storage
            continue
        ref = operation.get("requestBody", {}).get("content", {}).get(
            "application/json", {}).get("schema", {}).get("$ref", "")
        schema = schemas.get(ref.split("/")[-1], {})
        if "client_uuid" in schema.get("properties", {}):
            replay = operation["responses"].get("200", {})
            if "Idempotent-Replay" not in replay.get("headers", {}):
                missing.append(path)
    assert not missing, missing
