"""Scope isolation: a worker of grid A neither sees nor changes grid B's register."""

from __future__ import annotations

import pytest

from tests.conftest import assert_error_shape
from tests.fixtures.areas import C11, G111, G112, S1
from tests.fixtures.http import at, total

KINDS = ["buildings", "houses", "households", "persons", "organisations"]

WHY = "purpose_code=verify_identity&purpose="  # a reveal's purpose (code, then text)


@pytest.fixture
def theirs(api) -> dict:
    """A full register in grid G112, collected by that grid's worker."""
    neighbour = api("grid_worker", G112)
    chain = neighbour.chain(G112)
    chain["organisation"] = neighbour.organisation(G112, risk_flags=["fire_safety_key"])
    return {f"{kind}s": record for kind, record in chain.items()}


@pytest.mark.parametrize("kind", KINDS)
def test_a_worker_gets_404_for_another_grids_records(worker, theirs, kind):
    record = theirs[kind]
    url = f"/{kind}/{record['id']}"
    for response in (worker.get(url), worker.get(f"{url}/history")):
        body = assert_error_shape(response, 404)
        assert str(record["id"]) not in body["message"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_worker_cannot_change_another_grids_records(worker, theirs, api, kind):
    record = theirs[kind]
    url = f"/{kind}/{record['id']}"
    edits = {"buildings": {"name": "改"}, "houses": {"room": "999"},
             "households": {"household_no": "改"}, "persons": {"name": "改"},
             "organisations": {"name": "改"}}[kind]
    assert_error_shape(worker.patch(url, {**edits, "version": 1}), 404)
    end = {"status": "deceased"} if kind == "persons" else {"reason": "x"}
    assert_error_shape(worker.post(f"{url}/end", {**end, "version": 1}), 404)
    owner = api("grid_chief", G112)
    after = owner.ok(owner.get(url))
    assert after["version"] == 1 and after["ended_at"] is None


@pytest.mark.parametrize("kind", KINDS)
def test_a_list_never_shows_another_grids_records(worker, theirs, kind):
    mine = worker.chain(G111)
    mine["organisation"] = worker.organisation(G111, risk_flags=["fire_safety_key"])
    response = worker.get(f"/{kind}?include_ended=true")
    assert [r["id"] for r in worker.ok(response)] == [mine[kind[:-1]]["id"]]
    assert total(response) == 1
    # …whatever the filter
    extra = {"houses": f"building_id={theirs['buildings']['id']}",
             "households": f"house_id={theirs['houses']['id']}",
             "persons": f"household_id={theirs['households']['id']}",
             "organisations": "risk_flag=fire_safety_key",
             "buildings": "use=residential"}[kind]
    filtered = [r["id"] for r in worker.ok(worker.get(f"/{kind}?{extra}"))]
    assert theirs[kind]["id"] not in filtered


def test_another_grids_records_cannot_be_used_as_parents(worker, theirs):
    for url, body, field in (
            ("/houses", {"building_id": theirs["buildings"]["id"], "room": "1"}, "building_id"),
            ("/households", {"house_id": theirs["houses"]["id"]}, "house_id"),
            ("/persons", {"name": "x", "household_id": theirs["households"]["id"]},
             "household_id"),
            ("/organisations", {"name": "x", "location": at(G111),
                                "building_id": theirs["buildings"]["id"]}, "building_id")):
        body422 = assert_error_shape(worker.post(url, body), 422)
        assert field in body422["errors"]["json"]
    person = worker.person()
    response = worker.post(f"/persons/{person['id']}/move",
                           {"household_id": theirs["households"]["id"], "version": 1})
    assert "household_id" in assert_error_shape(response, 422)["errors"]["json"]


def test_their_subresources_do_not_exist_either(worker, theirs):
    person, household = theirs["persons"], theirs["households"]
    org = theirs["organisations"]
    for url in (f"/persons/{person['id']}/stays", f"/households/{household['id']}/members",
                f"/persons/{person['id']}/pii?{WHY}核对身份信息",
                f"/organisations/{org['id']}/indicators"):
        assert_error_shape(worker.get(url), 404)
    assert_error_shape(worker.post(f"/persons/{person['id']}/tags",
                                   {"tag": "elderly_alone"}), 404)
    assert_error_shape(worker.post(f"/persons/{person['id']}/move",
                                   {"household_id": household["id"], "version": 1}), 404)


def test_the_community_and_street_see_their_grids(api, worker, theirs):
    mine = worker.building()
    for role, code in (("grid_chief", C11), ("street_dispatcher", S1)):
        above = api(role, code)
        ids = {b["id"] for b in above.ok(above.get("/buildings"))}
        assert ids == {mine["id"], theirs["buildings"]["id"]}


def test_a_dispatcher_reads_but_does_not_write_the_register(api, theirs):
    dispatcher = api("street_dispatcher", S1)
    person = theirs["persons"]
    assert dispatcher.ok(dispatcher.get(f"/persons/{person['id']}"))["id"] == person["id"]
    body = assert_error_shape(dispatcher.patch(f"/persons/{person['id']}",
                                               {"name": "改", "version": 1}), 403)
    assert body["required"] == "registry:write"
    assert_error_shape(dispatcher.post("/buildings", {"name": "x", "location": at(G112)}), 403)


def test_without_memberships_the_register_is_empty(auth_headers, client, theirs):
    headers = auth_headers("grid_worker")
    for kind in KINDS:
        response = client.get(f"/{kind}", headers=headers)
        assert response.status_code == 200 and response.get_json() == []
        assert_error_shape(client.get(f"/{kind}/{theirs[kind]['id']}", headers=headers), 404)


def test_roles_without_the_register_get_403_and_anonymous_401(auth_headers, client, theirs):
    resident = auth_headers("resident")
    for kind in KINDS:
        assert_error_shape(client.get(f"/{kind}", headers=resident), 403)
        assert_error_shape(client.get(f"/{kind}"), 401)


@pytest.mark.parametrize("kind", KINDS)
def test_ids_beyond_bigint_are_a_404_not_a_500(worker, kind):
    huge = 2**64 + 5
    for response in (worker.get(f"/{kind}/{huge}"), worker.get(f"/{kind}/{huge}/history"),
                     worker.patch(f"/{kind}/{huge}", {"version": 1}),
                     worker.get(f"/{kind}?page={huge}")):
        assert response.status_code in (404, 422, 200), response.get_data(as_text=True)
        assert response.status_code != 200 or response.get_json() == []
