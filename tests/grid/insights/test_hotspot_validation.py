"""Hot spots validated, not assumed: planted clusters over an uneven background.

A seeded generator lays one category's cases over a 19 km × 15.5 km district for 114 days
(a 30-day window after a 12-week baseline, the documented defaults):
- background ≈ 10 cases a day (a district of ~500 grids, one category among twenty): 60 %
  spread evenly, 40 % around three town centres (Gaussian, σ 2 km: about 3× the rural
  density at their middle) — denser places that are not clusters;
- twelve planted clusters (σ 60–200 m, centres ≥ 2 km apart, ≥ 1 km inside the edge):
  six new (window only, 8–25 cases), two persistent (the same rate before and now), two
  intensifying (a few before, many now), two fading (many before, fewer now).
A reported hot spot is true when it touches (one cell's margin) a planted centre's cell;
a planted cluster is found when a reported hot spot touches its centre. Over three seeds:
recall ≥ 0.9, precision ≥ 0.9 and the class right for ≥ 75 % of the found ones. The
measured figures are printed (pytest -s) and quoted in README and bench/README.md.

Measured (2026-12-08): recall 1.000 (36/36), precision 0.947 (36/38), class right 34/36.
Where the method stops: with half the background in towns of σ 1.5 km (about 6× the rural
density at their middle) and weaker clusters (6–20 cases, σ up to 250 m) it measured
recall 0.972, precision 0.875 — Gi* compares with the area's average, so a steep town
centre is itself a (persistent) hot spot; a finer `cell_m` or a smaller area helps there.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from grid.areas import boundaries
from grid.areas.models import Area
from grid.cases.models import CaseCategory
from grid.demo import SYSTEM
from grid.insights import hotspots
from tests.fixtures.areas import collection, feature, rect

X0, Y0, X1, Y1 = 120.00, 30.10, 120.20, 30.24
DEG_X, DEG_Y = 96_400.0, 111_000.0  # metres per degree near 30° N
END = datetime(2026, 6, 1, tzinfo=UTC)
SETTINGS = hotspots.HotspotSettings()  # the documented defaults
BASELINE_DAYS = SETTINGS.baseline_weeks * 7
WINDOW_DAYS = SETTINGS.window_days

# (class, window cases, baseline cases)
PLANTED = [("new", None, 0)] * 6 + [("persistent", 15, 42)] * 2 + \
          [("intensifying", 25, 24)] * 2 + [("fading", 12, 100)] * 2


@pytest.fixture
def study_area(db_session) -> Area:
    box = (X0, Y0, X1, Y1)
    boundaries.import_areas(db_session, SYSTEM, collection(
        feature("330184", "验证区", "district", None, rect(*box)),
        feature("330184001", "验证街道", "street", "330184", rect(*box)),
        feature("330184001001", "验证社区", "community", "330184001", rect(*box)),
        feature("330184001001001", "验证网格", "grid", "330184001001", rect(*box))),
        dry_run=False, opts=boundaries.Options())
    db_session.commit()
    return db_session.scalar(sa.select(Area).where(Area.code == "330184"))


def _point(rng: random.Random, cx: float, cy: float, sigma_m: float) -> tuple[float, float]:
    while True:
        x = cx + rng.gauss(0, sigma_m) / DEG_X
        y = cy + rng.gauss(0, sigma_m) / DEG_Y
        if X0 < x < X1 and Y0 < y < Y1:
            return x, y


def _when(rng: random.Random, start_days: float, days: float) -> datetime:
    return END - timedelta(days=start_days) + timedelta(seconds=rng.uniform(0, days * 86400))


def generate(seed: int) -> tuple[list[tuple[float, float, datetime]], list[tuple]]:
    """(cases as (lon, lat, reported_at), planted as (class, lon, lat))."""
    rng = random.Random(seed)
    total_days = WINDOW_DAYS + BASELINE_DAYS
    cases = []
    towns = [(rng.uniform(X0 + 0.03, X1 - 0.03), rng.uniform(Y0 + 0.03, Y1 - 0.03))
             for _ in range(3)]
    for _ in range(10 * total_days):
        when = _when(rng, total_days, total_days)
        if rng.random() < 0.6:
            cases.append((rng.uniform(X0, X1), rng.uniform(Y0, Y1), when))
        else:
            cases.append((*_point(rng, *rng.choice(towns), 2000), when))
    centres: list[tuple[float, float]] = []
    planted = []
    for kind, window_n, baseline_n in PLANTED:
        while True:
            cx, cy = rng.uniform(X0 + 0.011, X1 - 0.011), rng.uniform(Y0 + 0.009, Y1 - 0.009)
            if all(math.hypot((cx - x) * DEG_X, (cy - y) * DEG_Y) > 2000 for x, y in centres):
                break
        centres.append((cx, cy))
        planted.append((kind, cx, cy))
        sigma = rng.uniform(60, 200)
        window_n = window_n or rng.randint(8, 25)
        cases += [(*_point(rng, cx, cy, sigma), _when(rng, WINDOW_DAYS, WINDOW_DAYS))
                  for _ in range(window_n)]
        cases += [(*_point(rng, cx, cy, sigma), _when(rng, total_days, BASELINE_DAYS))
                  for _ in range(baseline_n)]
    return cases, planted


def _insert(s, area: Area, category_id: int, seed: int, cases: list) -> None:
    grid_id = s.scalar(sa.select(Area.id).where(Area.code == "330184001001001"))
    s.execute(sa.text("DELETE FROM cases WHERE area_id = :g"), {"g": grid_id})
    s.execute(sa.text("""
        INSERT INTO cases (code, category_id, channel, state, area_id, description, location,
                           reported_at, version)
        SELECT 'HS' || :seed || '-' || i, :cat, 'worker_app', 'closed', :grid, '验证',
               ST_SetSRID(ST_MakePoint(x, y), 4326), t, 1
        FROM unnest(CAST(:xs AS float8[]), CAST(:ys AS float8[]), CAST(:ts AS timestamptz[]))
             WITH ORDINALITY AS u(x, y, t, i)"""),
        {"seed": seed, "cat": category_id, "grid": grid_id,
         "xs": [c[0] for c in cases], "ys": [c[1] for c in cases],
         "ts": [c[2] for c in cases]})


def _cells(s, srid: int, size: float, points: list[tuple]) -> list[tuple[int, int]]:
    rows = s.execute(sa.text("""
        SELECT floor(ST_X(g) / :size)::int, floor(ST_Y(g) / :size)::int
        FROM unnest(CAST(:xs AS float8[]), CAST(:ys AS float8[])) WITH ORDINALITY AS u(x, y, i)
        CROSS JOIN LATERAL ST_Transform(ST_SetSRID(ST_MakePoint(x, y), 4326), :srid) AS g
        ORDER BY i"""), {"size": size, "srid": srid, "xs": [p[1] for p in points],
                          "ys": [p[2] for p in points]})
    return [tuple(r) for r in rows]


def _near(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return abs(a[0] - b[0]) <= 1 and abs(a[1] - b[1]) <= 1


def test_planted_hot_spots_are_found_with_few_false_ones(db_session, study_area):
    category = db_session.scalar(sa.select(CaseCategory).where(
        CaseCategory.parent_id.is_not(None)).order_by(CaseCategory.code).limit(1))
    found = planted_n = true_spots = spots_n = right_class = 0
    for seed in (1, 2, 3):
        cases, planted = generate(seed)
        _insert(db_session, study_area, category.id, seed, cases)
        analysis = hotspots.analyse(db_session, [category.id], study_area, SETTINGS,
                                    SETTINGS.cell_m, END)
        centres = _cells(db_session, analysis.srid, analysis.cell_m, planted)
        for (kind, _, _), centre in zip(planted, centres, strict=True):
            hit = [sp for sp in analysis.spots if any(_near(c, centre) for c in sp.cells)]
            found += bool(hit)
            right_class += bool(hit) and hit[0].spot_class == kind
        true_spots += sum(any(_near(c, centre) for c in sp.cells for centre in centres)
                          for sp in analysis.spots)
        planted_n += len(planted)
        spots_n += len(analysis.spots)
    recall, precision = found / planted_n, true_spots / max(1, spots_n)
    print(f"\nhot spots: recall {recall:.3f} ({found}/{planted_n}), precision "
          f"{precision:.3f} ({true_spots}/{spots_n}), class right "
          f"{right_class}/{found}")
    assert recall >= 0.9
    assert precision >= 0.9
    assert right_class >= 0.75 * found
