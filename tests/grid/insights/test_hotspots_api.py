"""Hot spots through the API: a run as a job, the latest run's hot spots in scope with their
cases, small hot spots suppressed for roles without register access, the tile layer."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
import sqlalchemy as sa

from grid.areas.models import Area
from grid.insights import hotspot_runs
from server import clock, db, jobs
from server.auth.actor import Actor
from server.storage.blobs import blob_store
from tests.fixtures.areas import BOXES, G111, G121, G211, G212, S1, D
from tests.fixtures.http import at
from tests.fixtures.maps import decode, tile_at

CLUSTERS = {G111: 12, G121: 4, G211: 10}


def _insert(s, category_id: int, code: str, points: list[tuple[float, float]],
            days_ago: float, tag: str) -> list[int]:
    area = s.scalar(sa.select(Area.id).where(Area.code == code))
    rng = random.Random(tag)
    when = [clock.now() - timedelta(days=rng.uniform(0.1, days_ago)) for _ in points]
    return list(s.scalars(sa.text("""
        INSERT INTO cases (code, category_id, channel, state, area_id, description, location,
                           reported_at, version)
        SELECT :tag || i, :cat, 'worker_app', 'closed', :area, '占道经营',
               ST_SetSRID(ST_MakePoint(x, y), 4326), t, 1
        FROM unnest(CAST(:xs AS float8[]), CAST(:ys AS float8[]), CAST(:ts AS timestamptz[]))
             WITH ORDINALITY AS u(x, y, t, i)
        RETURNING id"""), {"tag": tag, "cat": category_id, "area": area,
                           "xs": [p[0] for p in points], "ys": [p[1] for p in points],
                           "ts": when}))


@pytest.fixture
def planted(db_session, tree):
    """A sparse background over the district (114 days; none near G121's centre) and three
    tight clusters of the last ten days: 12 cases in G111, 4 in G121, 10 in G211."""
    category = db_session.execute(sa.text(
        "SELECT id, code FROM case_categories WHERE parent_id IS NOT NULL ORDER BY code LIMIT 1"
    )).one()
    rng = random.Random(7)
    x0, y0, x1, y1 = BOXES[D]
    # the background's cases are filed to one grid (what matters here is where they lie)
    # and kept 300 m off G121's centre, so that its small cluster stays at 4 cases
    small = at(G121)
    background = [(rng.uniform(x0, x1), rng.uniform(y0, y1)) for _ in range(30)]
    _insert(db_session, category.id, G212, [
        (x, y) for x, y in background
        if abs(x - small["lon"]) > 0.003 or abs(y - small["lat"]) > 0.003], 114, "BG")
    ids = {}
    for code, n in CLUSTERS.items():
        c = at(code)
        ids[code] = _insert(db_session, category.id, code, [
            (c["lon"] + rng.gauss(0, 0.0002), c["lat"] + rng.gauss(0, 0.0002))
            for _ in range(n)], 10, f"C{code}-")
    db_session.commit()
    return category.code, ids


def _run(admin, tree, code: str) -> dict:
    response = admin.post("/insights/hotspots/runs",
                          {"category": code, "area_id": tree[D], "cell_m": 50,
                           "min_count": 3})
    job = admin.ok(response, 202)
    assert response.headers["Location"].endswith(f"/jobs/{job['id']}")
    assert jobs.run_next(db.session(), blob_store())["state"] == "succeeded"
    return admin.ok(admin.get(f"/jobs/{job['id']}"))


def test_a_run_finds_the_clusters_and_each_reader_sees_their_own(api, tree, planted):
    code, ids = planted
    admin = api("district_admin", D)
    result = _run(admin, tree, code)["result"]
    assert result["hotspots"] == 3
    everything = admin.ok(admin.get(f"/insights/hotspots?category={code}&area_id={tree[D]}"))
    assert everything["run"]["id"] == result["run_id"]
    assert everything["run"]["settings"]["cell_m"] == 50
    by_area = {h["area_id"]: h for h in everything["hotspots"]}
    assert set(by_area) == {tree[G111], tree[G121], tree[G211]}
    for grid, n in CLUSTERS.items():
        spot = by_area[tree[grid]]
        assert set(ids[grid]) <= set(spot["case_ids"]) and spot["count"] >= n
        assert spot["class"] == "new" and spot["class_label"] == "新出现"
        assert spot["q"] <= 0.05 and spot["expected"] < 1 and spot["z"] > 2
        assert spot["shape"]["type"] == "MultiPolygon"
    # a street dispatcher of S1: S1's hot spots only; the district is not theirs
    dispatcher = api("street_dispatcher", S1)
    mine = dispatcher.ok(dispatcher.get(f"/insights/hotspots?category={code}"
                                        f"&area_id={tree[S1]}"))
    assert {h["area_id"] for h in mine["hotspots"]} == {tree[G111], tree[G121]}
    assert dispatcher.get(f"/insights/hotspots?category={code}&area_id={tree[D]}"
                          ).status_code == 404
    assert dispatcher.ok(dispatcher.get(f"/insights/hotspots?category={code}"
                                        f"&area_id={tree[S1]}&class=fading"))["hotspots"] == []
    worker = api("grid_worker", G111)  # no stats:read
    assert worker.get(f"/insights/hotspots?category={code}&area_id={tree[G111]}"
                      ).status_code == 403


def test_small_hot_spots_are_suppressed_without_register_access(api, tree, planted,
                                                                db_session):
    code, _ = planted
    _run(api("district_admin", D), tree, code)
    path = db_session.scalar(sa.select(Area.path).where(Area.code == D))
    reader = Actor(user_id=1, roles=frozenset({"department_handler"}),
                   permissions=frozenset({"stats:read", "case:read"}), area_paths=(path,))
    shown = hotspot_runs.hotspots_for(db_session, reader, code, tree[D])["hotspots"]
    assert sorted(h["count"] for h in shown) == [10, 12]  # G121's 4 cases are not shown


def test_the_hotspots_tile_layer(api, tree, planted):
    code, _ = planted
    admin = api("district_admin", D)
    _run(admin, tree, code)
    response = admin.get(f"/tiles/hotspots/{tile_at(at(G111), 14)}.mvt")
    assert response.status_code == 200
    features = decode(response.data)["hotspots"]["features"]
    assert [(f["properties"]["category"], f["properties"]["class"]) for f in features] == [
        (code, "new")]
    chief = api("grid_chief", G211)
    assert decode(chief.get(f"/tiles/hotspots/{tile_at(at(G111), 14)}.mvt").data) == {}


def test_the_daily_task_runs_every_busy_category_of_every_district(api, tree, planted,
                                                                    db_session):
    code, ids = planted
    assert hotspot_runs.daily_runs(db_session) == {"runs": 1, "pruned": 0}
    db_session.commit()
    admin = api("district_admin", D)
    found = admin.ok(admin.get(f"/insights/hotspots?category={code}&area_id={tree[D]}"))
    assert found["run"]["settings"]["cell_m"] == 250  # the defaults
    assert any(set(ids[G111]) <= set(h["case_ids"]) for h in found["hotspots"])


def test_unknown_categories_are_422(api, tree):
    admin = api("district_admin", D)
    response = admin.get(f"/insights/hotspots?category=9999&area_id={tree[D]}")
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"query": {"category": ["No such category."]}}
    response = admin.post("/insights/hotspots/runs", {"category": "9999", "area_id": tree[D]})
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"json": {"category": ["No such category."]}}
