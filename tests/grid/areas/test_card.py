"""网格公示卡: the grid's chief and workers, phones masked."""

from __future__ import annotations

import re

from tests.conftest import assert_error_shape
from tests.fixtures.areas import C11, G111, G112, S1, D

MASKED = re.compile(r"^\d{3}\*{4}\d{4}$")


def test_the_card_shows_chief_and_workers_with_masked_phones(client, tree, member):
    _, chief = member("grid_chief", G111, phone="13812345678", display_name="王网格长")
    worker_headers, worker = member("grid_worker", G111, phone="13987654321",
                                    display_name="李网格员")
    member("grid_worker", "330183001001002", phone="13700001111", display_name="别的网格员")

    response = client.get(f"/areas/{tree[G111]}/card", headers=worker_headers)
    assert response.status_code == 200, response.get_json()
    card = response.get_json()
    assert card["area"]["code"] == G111
    assert [a["code"] for a in card["chain"]] == [D, S1, C11, G111]
    assert [(c["name"], c["phone"]) for c in card["chiefs"]] == [("王网格长", "138****5678")]
    assert [(c["name"], c["phone"]) for c in card["workers"]] == [("李网格员", "139****4321")]
    assert card["chiefs"][0]["user_id"] == chief.id
    assert card["workers"][0]["user_id"] == worker.id
    text = response.get_data(as_text=True)
    for full in ("13812345678", "13987654321", "13700001111", "别的网格员"):
        assert full not in text
    for contact in card["chiefs"] + card["workers"]:
        assert MASKED.match(contact["phone"])


def test_a_worker_without_a_phone_has_none(client, tree, member, admin):
    member("grid_worker", G111)
    card = client.get(f"/areas/{tree[G111]}/card", headers=admin).get_json()
    assert card["workers"][0]["phone"] is None
    assert card["chiefs"] == []


def test_the_public_card_answers_without_login_and_keeps_counts_private(
        app, client, tree, member, monkeypatch):
    monkeypatch.setitem(app.config, "MAP_PUBLIC_AREAS", True)
    member("grid_chief", G111, phone="13812345678", display_name="王网格长")
    worker_headers, _ = member("grid_worker", G111, phone="13987654321",
                               display_name="李网格员")

    response = client.get(f"/areas/{tree[G111]}/card")
    assert response.status_code == 200, response.get_json()
    card = response.get_json()
    assert card["area"]["code"] == G111 and card["area"]["name"] == "北社区第1网格"
    assert [a["code"] for a in card["chain"]] == [D, S1, C11, G111]
    assert card["boundary"]["type"] in ("Polygon", "MultiPolygon")
    assert [(c["name"], c["phone"]) for c in card["chiefs"]] == [("王网格长", "138****5678")]
    assert [(c["name"], c["phone"]) for c in card["workers"]] == [("李网格员", "139****4321")]
    assert all("user_id" not in c for c in card["chiefs"] + card["workers"])
    assert card["counts"] == {}
    text = response.get_data(as_text=True)
    assert "13812345678" not in text and "13987654321" not in text

    # The grid's own worker, logged in, gets the counts of people as well.
    own = client.get(f"/areas/{tree[G111]}/card", headers=worker_headers).get_json()
    assert set(own["counts"]) >= {"households", "population"}
    assert own["workers"][0]["user_id"]
    # A worker of another grid gets the public card, not the counts.
    other_headers, _ = member("grid_worker", G112)
    other = client.get(f"/areas/{tree[G111]}/card", headers=other_headers)
    assert other.status_code == 200 and other.get_json()["counts"] == {}
    assert_error_shape(client.get("/areas/999999999/card"), 404)
    # A token that is sent must be valid: a stale session is told so, not served as nobody.
    assert_error_shape(client.get(f"/areas/{tree[G111]}/card",
                                  headers={"Authorization": "Bearer stale"}), 401)


def test_without_public_areas_the_card_needs_a_login_and_scope(app, client, tree, member,
                                                               monkeypatch):
    monkeypatch.setitem(app.config, "MAP_PUBLIC_AREAS", False)
    headers, _ = member("grid_worker", G111)
    response = client.get(f"/areas/{tree[G111]}/card")
    assert_error_shape(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get(f"/areas/{tree[G111]}/card", headers=headers).status_code == 200
    assert_error_shape(client.get(f"/areas/{tree[G112]}/card", headers=headers), 404)
    assert_error_shape(client.get("/areas/999999999/card", headers=headers), 404)
