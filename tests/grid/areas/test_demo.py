"""The demo district: generated deterministically, imported through the same checks as a
city's file, and tiling each parent without gaps or overlaps."""

from __future__ import annotations

import math

import sqlalchemy as sa
from shapely.geometry import shape

from grid import demo
from grid.areas import boundaries

# What the tiling may leave unexplained: coordinate rounding to 1e-7° (~1 cm) along edges.
SLIVER_M2 = 1.0
# One square degree at 30.05° N: 111.32 km x cos(30.05°) by 110.85 km.
M2_PER_SQUARE_DEGREE = 111_320 * math.cos(math.radians(30.05)) * 110_850


def test_demo_district_tiles_without_gaps_or_overlaps(db_session):
    features = list(demo.district_features())
    assert features == list(demo.district_features())  # deterministic (fixed seed)
    levels = [f["properties"]["level"] for f in features]
    assert {lv: levels.count(lv) for lv in set(levels)} == {
        "city": 1, "district": 1, "street": 3, "community": 10, "grid": 61}

    report = boundaries.import_areas(db_session, demo.SYSTEM, {
        "type": "FeatureCollection", "features": features}, dry_run=False,
        opts=boundaries.Options())
    assert report.errors == []  # no overlaps, nothing outside its parent
    # the only gap is the city's: the demo has one of its districts
    assert [(w.kind, w.code) for w in report.warnings] == [("gap", demo.CITY[0])]
    assert len(report.created) == 76

    # Independently of the importer's own checks: per parent, the children's union is the
    # parent and the children's areas add up to it (so nothing overlaps either). Measured on
    # the plane of lon/lat, where the cut lines are straight: on the spheroid, a parent's edge
    # from A to B is a geodesic while its children meet it at a point of the straight line
    # A-B, which makes ~800 m² of apparent sliver along the district's 20 km perimeter.
    rows = db_session.execute(sa.text("""
        SELECT p.code,
               ST_Area(p.boundary) * :m2 AS parent_m2,
               SUM(ST_Area(c.boundary)) * :m2 AS children_m2,
               ST_Area(ST_SymDifference(p.boundary, ST_Union(c.boundary))) * :m2 AS diff_m2
        FROM areas p JOIN areas c ON c.parent_id = p.id
        WHERE p.level IN ('district', 'street', 'community')
        GROUP BY p.id
    """), {"m2": M2_PER_SQUARE_DEGREE}).all()
    assert len(rows) == 1 + 3 + 10
    for r in rows:
        assert r.diff_m2 < SLIVER_M2, (r.code, r.diff_m2)
        assert abs(r.children_m2 - r.parent_m2) < SLIVER_M2, (r.code, r.children_m2, r.parent_m2)
    overlaps = db_session.scalar(sa.text("""
        SELECT COUNT(*) FROM areas a JOIN areas b
          ON a.parent_id = b.parent_id AND a.id < b.id AND ST_Intersects(a.boundary, b.boundary)
        WHERE ST_Area(ST_Intersection(a.boundary, b.boundary)) * :m2 > :sliver
    """), {"m2": M2_PER_SQUARE_DEGREE, "sliver": SLIVER_M2})
    assert overlaps == 0
    # sizes a governance office would recognise: grids of roughly 0.1–2 km²
    grid_m2 = db_session.scalars(sa.text("SELECT area_m2 FROM areas WHERE level = 'grid'")).all()
    assert len(grid_m2) == 61 and all(5e4 < m2 < 2.5e6 for m2 in grid_m2), sorted(grid_m2)

    # Codes: district 6 digits, +3 per level, each starting with its parent's; numbered from
    # 001 without holes; streets west→east; communities and grids north→south, west→east
    # within a row (the generator's rows: latitude to 0.001°).
    by_code = {f["properties"]["code"]: f for f in features}
    digits = {"city": 6, "district": 6, "street": 9, "community": 12, "grid": 15}
    children: dict[str, list[str]] = {}
    for code, f in by_code.items():
        props = f["properties"]
        assert len(code) == digits[props["level"]] and code.isdigit()
        if props["level"] in ("street", "community", "grid"):
            assert code.startswith(props["parent_code"])
            children.setdefault(props["parent_code"], []).append(code)
    assert sorted(children["330183"]) == ["330183001", "330183002", "330183003"]

    def where(code):
        p = shape(by_code[code]["geometry"]).representative_point()
        return p.x, p.y

    streets = sorted(children["330183"])
    assert [where(c)[0] for c in streets] == sorted(where(c)[0] for c in streets)
    for parent in [*streets, *(c for s in streets for c in children[s])]:
        codes = sorted(children[parent])
        assert [c[-3:] for c in codes] == [f"{i:03d}" for i in range(1, len(codes) + 1)]
        if len(parent) == 9:  # communities: strips cut north→south
            lats = [where(c)[1] for c in codes]
            assert lats == sorted(lats, reverse=True), parent
        else:  # grids: rows north→south, west→east within a row
            keys = [(-round(where(c)[1], 3), where(c)[0]) for c in codes]
            assert keys == sorted(keys), parent
            assert where(codes[0])[1] >= where(codes[-1])[1]
