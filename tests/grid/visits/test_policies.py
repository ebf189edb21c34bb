"""Visit policies (走访频次): defaults, the most specific area wins, who may set them,
versions, and key-person groups invisible to roles that may not see them."""

from __future__ import annotations

import sqlalchemy as sa

from grid.visits.models import DEFAULT_POLICIES
from server.audit import AuditEntry
from tests.conftest import assert_error_shape
from tests.fixtures.areas import C11, C12, G111, G121, D


def _effective(client, headers, area_id) -> dict[str, dict]:
    response = client.get("/visit-policies/effective", headers=headers,
                          query_string={"area_id": area_id})
    assert response.status_code == 200, response.get_json()
    return {item["tag"]: item for item in response.get_json()}


def test_defaults_apply_where_no_area_has_a_policy(client, member, tree):
    worker, _ = member("grid_worker", G111)
    effective = _effective(client, worker, tree[G111])
    assert effective["elderly_alone"] == {"tag": "elderly_alone", "label": "独居老人",
                                          "kind": "care", "interval_days": 7,
                                          "source": "default"}
    assert effective["empty_nest"]["interval_days"] == 14
    assert effective["veteran"]["interval_days"] is None
    assert effective["veteran"]["source"] == "none"
    # Key-person groups do not exist for a worker.
    assert not {"community_correction", "drug_user"} & set(effective)
    chief, _ = member("grid_chief", G111)
    key = _effective(client, chief, tree[G111])["community_correction"]
    assert (key["kind"], key["interval_days"]) == ("key", DEFAULT_POLICIES["community_correction"])


def test_the_most_specific_area_wins(client, member, tree, db_session):
    district, _ = member("district_admin", D)
    staff, _ = member("community_staff", C11)

    response = client.put(f"/visit-policies/{tree[D]}/elderly_alone", headers=district,
                          json={"interval_days": 10})
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["label"] == "独居老人"
    response = client.put(f"/visit-policies/{tree[C11]}/elderly_alone", headers=staff,
                          json={"interval_days": 3})
    assert response.status_code == 201, response.get_json()

    in_c11 = _effective(client, staff, tree[G111])["elderly_alone"]
    assert (in_c11["interval_days"], in_c11["source"], in_c11["area_code"]) == (3, "area", C11)
    # The other community of the district keeps the district's policy.
    in_c12 = _effective(client, district, tree[G121])["elderly_alone"]
    assert (in_c12["interval_days"], in_c12["area_code"]) == (10, D)
    # Other groups keep their defaults.
    assert _effective(client, staff, tree[G111])["empty_nest"]["source"] == "default"

    # Removing the community's row falls back to the district's.
    response = client.delete(f"/visit-policies/{tree[C11]}/elderly_alone", headers=staff)
    assert response.status_code == 204, response.get_data(True)
    assert _effective(client, staff, tree[G111])["elderly_alone"]["interval_days"] == 10
    assert_error_shape(client.delete(f"/visit-policies/{tree[C11]}/elderly_alone",
                                     headers=staff), 404)
    actions = db_session.scalars(sa.select(AuditEntry.action).where(
        AuditEntry.object_type == "visit_policy").order_by(AuditEntry.id)).all()
    assert actions == ["visit_policy_set", "visit_policy_set", "visit_policy_removed"]


def test_who_may_set_policies_and_where(client, member, tree):
    worker, _ = member("grid_worker", G111)
    staff, _ = member("community_staff", C11)
    district, _ = member("district_admin", D)
    url = f"/visit-policies/{tree[C11]}/elderly_alone"
    response = client.put(url, headers=worker, json={"interval_days": 3})
    assert assert_error_shape(response, 403)["required"] == "registry:import"
    # The district is visible to the community's staff (an ancestor) but not theirs to set;
    # neither is the neighbouring community.
    for area in (D, C12):
        response = client.put(f"/visit-policies/{tree[area]}/elderly_alone", headers=staff,
                              json={"interval_days": 3})
        assert_error_shape(response, 404)
    # Key-person groups: not for community staff (no person:read_key_tags), fine for the
    # district.
    assert_error_shape(client.put(f"/visit-policies/{tree[C11]}/community_correction",
                                  headers=staff, json={"interval_days": 14}), 404)
    response = client.put(f"/visit-policies/{tree[C11]}/community_correction",
                          headers=district, json={"interval_days": 14})
    assert response.status_code == 201, response.get_json()
    assert_error_shape(client.put(f"/visit-policies/{tree[C11]}/no_such_group",
                                  headers=district, json={"interval_days": 14}), 404)
    for days in (0, 367):
        response = client.put(url, headers=staff, json={"interval_days": days})
        assert "interval_days" in assert_error_shape(response, 422)["errors"]["json"]

    # Listing rows: the community's staff sees neither the key-person row nor other areas'.
    client.put(f"/visit-policies/{tree[C12]}/empty_nest", headers=district,
               json={"interval_days": 7})
    rows = client.get("/visit-policies", headers=staff).get_json()
    assert rows == []
    assert_error_shape(client.get("/visit-policies", headers=staff,
                                  query_string={"tag": "community_correction"}), 404)
    rows = client.get("/visit-policies", headers=district).get_json()
    assert {(r["area_id"], r["tag"]) for r in rows} == {
        (tree[C11], "community_correction"), (tree[C12], "empty_nest")}


def test_replacing_a_policy_needs_its_version(client, member, tree):
    staff, _ = member("community_staff", C11)
    url = f"/visit-policies/{tree[C11]}/disabled"
    created = client.put(url, headers=staff, json={"interval_days": 20})
    assert created.status_code == 201 and created.headers["ETag"] == '"1"'
    assert_error_shape(client.put(url, headers=staff, json={"interval_days": 15}), 428)
    stale = client.put(url, headers=staff, json={"interval_days": 15, "version": 9})
    assert assert_error_shape(stale, 412)["current"]["interval_days"] == 20
    replaced = client.put(url, headers={**staff, "If-Match": '"1"'},
                          json={"interval_days": 15})
    assert replaced.status_code == 200, replaced.get_json()
    assert (replaced.get_json()["interval_days"], replaced.get_json()["version"]) == (15, 2)
    assert_error_shape(client.delete(url, headers={**staff, "If-Match": '"1"'}), 412)
    assert client.delete(url, headers={**staff, "If-Match": '"2"'}).status_code == 204
