"""What keeps a phone on a flaky network from storing twice or overwriting silently:
client-UUID idempotent creates, and versions on every update and end (412/428)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from grid.registry.models import Building, House, Household, Organisation, Person
from tests.conftest import assert_error_shape
from tests.fixtures.areas import G111
from tests.fixtures.http import at, new_uuid
from tests.fixtures.registry import ID_MALE_2023, USCC_A

KINDS = ["buildings", "houses", "households", "persons", "organisations"]
MODELS = {"buildings": Building, "houses": House, "households": Household,
          "persons": Person, "organisations": Organisation}


def _create_body(worker, kind: str) -> dict:
    """A create body per kind (its parents created first)."""
    if kind == "buildings":
        return {"name": "3幢", "location": at(G111), "leader_phone": "13812345678"}
    if kind == "houses":
        return {"building_id": worker.building()["id"], "room": "301",
                "owner_phone": "13812345678"}
    if kind == "households":
        return {"house_id": worker.house(worker.building())["id"], "household_no": "H-1"}
    if kind == "persons":
        return {"name": "王秀英", "id_number": ID_MALE_2023, "phone": "13812345678",
                "location": at(G111), "tags": [{"tag": "elderly_alone"}]}
    return {"name": "富春制衣", "uscc": USCC_A, "location": at(G111)}


def _count(db_session, kind: str) -> int:
    return db_session.scalar(sa.select(sa.func.count()).select_from(MODELS[kind]))


@pytest.mark.parametrize("kind", KINDS)
def test_the_same_client_uuid_and_body_returns_the_original(worker, db_session, kind):
    body = {**_create_body(worker, kind), "client_uuid": new_uuid()}
    first = worker.ok(worker.post(f"/{kind}", body), 201)
    replay = worker.post(f"/{kind}", body)
    again = worker.ok(replay, 200)  # a replay: 200 and the original record, as everywhere
    assert replay.headers["Idempotent-Replay"] == "true"
    assert again["id"] == first["id"] and again["version"] == first["version"]
    assert _count(db_session, kind) == 1
    assert worker.get(f"/{kind}/{first['id']}/history").get_json()[0]["action"].endswith(
        "_created")
    assert len(worker.get(f"/{kind}/{first['id']}/history").get_json()) == (
        2 if kind == "persons" else 1)  # the person's tag is a history row of its own


@pytest.mark.parametrize("kind", KINDS)
def test_the_same_client_uuid_with_another_body_is_a_409(worker, db_session, kind):
    body = {**_create_body(worker, kind), "client_uuid": new_uuid()}
    worker.ok(worker.post(f"/{kind}", body), 201)
    changed = dict(body)
    if kind == "persons":
        changed["name"] = "别人"
    elif kind == "houses":
        changed["room"] = "302"
    elif kind == "households":
        changed["household_no"] = "H-2"
    else:
        changed["name"] = "另一个"
    response = worker.post(f"/{kind}", changed)
    body409 = assert_error_shape(response, 409)
    assert "client_uuid" in body409["errors"]["json"]
    assert _count(db_session, kind) == 1


def test_a_failed_create_does_not_burn_its_client_uuid(worker):
    uuid = new_uuid()
    response = worker.post("/persons", {"name": "王", "client_uuid": uuid,
                                        "location": at("330183001001002")})
    assert_error_shape(response, 422)
    created = worker.ok(worker.post("/persons", {"name": "王", "client_uuid": uuid,
                                                 "location": at(G111)}), 201)
    assert created["name"] == "王"


def _record(worker, kind: str) -> dict:
    return worker.ok(worker.post(f"/{kind}", _create_body(worker, kind)), 201)


_EDITS = {"buildings": {"floors": 7}, "houses": {"floor": 4}, "households": {"type":
                                                                           "non_registered"},
          "persons": {"ethnicity": "回族"}, "organisations": {"employees": 3}}


@pytest.mark.parametrize("kind", KINDS)
def test_an_update_without_a_version_is_a_428(worker, kind):
    record = _record(worker, kind)
    assert_error_shape(worker.patch(f"/{kind}/{record['id']}", _EDITS[kind]), 428)
    body = {"status": "moved_out"} if kind == "persons" else {"reason": "x"}
    assert_error_shape(worker.post(f"/{kind}/{record['id']}/end", body), 428)
    assert worker.ok(worker.get(f"/{kind}/{record['id']}"))["version"] == 1


@pytest.mark.parametrize("kind", KINDS)
def test_a_stale_version_is_a_412_with_the_current_record_masked(worker, kind):
    record = _record(worker, kind)
    url = f"/{kind}/{record['id']}"
    current = worker.ok(worker.patch(url, {**_EDITS[kind], "version": 1}))
    assert current["version"] == 2
    response = worker.patch(url, {**_EDITS[kind], "version": 1})
    body = assert_error_shape(response, 412)
    assert body["current"] == current
    text = response.get_data(as_text=True)
    assert "13812345678" not in text and ID_MALE_2023 not in text
    # a stale end too
    end = {"status": "moved_out"} if kind == "persons" else {"reason": "x"}
    assert assert_error_shape(worker.post(f"{url}/end", {**end, "version": 1}),
                              412)["current"]["version"] == 2


@pytest.mark.parametrize("kind", KINDS)
def test_if_match_carries_the_version(worker, kind):
    record = _record(worker, kind)
    url = f"/{kind}/{record['id']}"
    etag = worker.get(url).headers["ETag"]
    assert etag == '"1"'
    response = worker.patch(url, _EDITS[kind], headers={"If-Match": etag})
    assert response.status_code == 200 and response.headers["ETag"] == '"2"'
    stale = worker.patch(url, _EDITS[kind], headers={"If-Match": 'W/"1"'})
    assert assert_error_shape(stale, 412)["current"]["version"] == 2
    # If-Match wins over a body version
    body_version = worker.patch(url, {**_EDITS[kind], "version": 2},
                                headers={"If-Match": '"1"'})
    assert_error_shape(body_version, 412)
    assert_error_shape(worker.patch(url, _EDITS[kind], headers={"If-Match": "*"}), 412)


@pytest.mark.parametrize("kind", KINDS)
def test_an_update_that_changes_nothing_keeps_the_version(worker, kind):
    record = _record(worker, kind)
    url = f"/{kind}/{record['id']}"
    first = worker.ok(worker.patch(url, {**_EDITS[kind], "version": 1}))
    entries = len(worker.ok(worker.get(f"{url}/history")))
    same = worker.ok(worker.patch(url, {**_EDITS[kind], "version": 2}))
    assert same["version"] == first["version"] == 2
    assert same["updated_at"] == first["updated_at"]
    assert len(worker.ok(worker.get(f"{url}/history"))) == entries
