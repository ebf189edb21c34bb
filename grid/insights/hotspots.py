"""Hot spots (热点): where cases of a category cluster now, more than chance allows.

Method — a focal-sum cluster test on a fixed metric grid (the Poisson form of Getis-Ord
Gi*), Benjamini–Hochberg false-discovery control, and a classification in the spirit of
emerging hot-spot analysis (ESRI's Emerging Hot Spot Analysis, Gi* per time slice):

1. Cells: square cells of `cell_m` metres (per category: `cell_m_by_category`, default
   250 m) in the UTM zone of the area's centre (a metric SRID: 3857 would shrink cells by
   cos(latitude)); cell (ix, iy) = floor(x / cell_m), floor(y / cell_m) — the same tiling
   as ST_SquareGrid, without materialising empty cells. The study area has
   n = area(m²) / cell_m² cells.
2. Counting in SQL (one statement, no per-case Python): the category's cases (and its
   小类) reported in [baseline_start, window_end) in the area's subtree, not merged,
   voided or rejected, counted per cell and time slice (slice 0 = the window of
   `window_days`; slices 1…k = the baseline of `baseline_weeks` cut into
   `baseline_slices` equal sub-periods), and each cell's focal sum over its 3×3
   neighbourhood (queen contiguity with itself: Gi*'s binary weights).
3. Test (per cell, the window): the focal sum F_i against Poisson(9·x̄), x̄ = window cases
   / n — the null of no clustering (cases spread at the area's average rate). p_i is the
   exact Poisson upper tail (regularised incomplete gamma), not the normal approximation
   Gi*'s z relies on (at a few cases a cell the z-score's tail is far too light). Gi*'s
   z-score is reported beside it. q_i: Benjamini–Hochberg over all n cells (empty
   neighbourhoods have p = 1). A cell is hot when q_i ≤ alpha, F_i ≥ min_count and it holds
   a case itself (the focal sum alone would light the 8 neighbours of a one-cell cluster).
4. Hot spots: hot cells joined with their 8 neighbours (connected components); the shape is
   the union of their cells; count = the window's cases in those cells; expected = cells ×
   x̄ (the area's average); baseline_expected = the cells' baseline cases scaled to the
   window's length; z, p, q = the strongest cell's.
5. Class, comparing the window with the baseline's sub-periods: a slice is hot when the
   spot's cells held significantly more than the area's average in it (Poisson, alpha,
   uncorrected). No hot slice → new (新出现); otherwise the window's count against the
   baseline rate (two one-sided Poisson tests at alpha): above → intensifying (加剧),
   below → fading (减弱), else persistent (持续).

Where it runs: a city-wide run is worker work — the daily periodic task `hotspot_runs`
(every district × every 小类 with at least `min_count` cases in the window) and, on demand,
a job (`POST /insights/hotspots/runs`, 202 + poll). Results are stored (`hotspot_runs`,
`hotspots`); `GET /insights/hotspots` and the `hotspots` tile layer read the latest run.
Validated by tests/grid/insights/test_hotspot_validation.py (planted clusters over an
uneven background; recall and precision measured), timed by bench/benchmarks/hotspots.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.areas.models import Area
from grid.cases.models import CaseCategory

EXCLUDED_STATES = ("merged", "voided", "rejected")  # duplicates and reports not accepted


@dataclass(frozen=True)
class HotspotSettings:
    """The documented defaults (README "Hot spots"); a view or the worker may override."""

    cell_m: float = 250.0
    cell_m_by_category: dict[str, float] = field(default_factory=dict)  # 小类/大类 code → m
    window_days: int = 30
    baseline_weeks: int = 12
    baseline_slices: int = 4
    alpha: float = 0.05
    min_count: int = 5

    def cell_for(self, code: str) -> float:
        """The category's own cell size, else its 大类's (first two digits), else the default."""
        return self.cell_m_by_category.get(
            code, self.cell_m_by_category.get(code[:2], self.cell_m))


@dataclass
class Spot:
    """A hot spot as found (before it is stored)."""

    cells: list[tuple[int, int]]
    count: int
    expected: float
    baseline_expected: float
    z: float
    p: float
    q: float
    hot_slices: int
    spot_class: str


@dataclass
class Analysis:
    """A run's outcome: the grid it used and the hot spots it found."""

    srid: int
    cell_m: float
    n_cells: int
    window_cases: int
    window_start: datetime
    window_end: datetime
    baseline_start: datetime
    spots: list[Spot]


# --- statistics (pure) ---------------------------------------------------------------------


def _gamma_p(a: float, x: float) -> float:
    """The regularised lower incomplete gamma P(a, x) (series / continued fraction)."""
    if x <= 0:
        return 0.0
    log_front = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:  # series
        term = total = 1.0 / a
        ap = a
        for _ in range(10_000):
            ap += 1
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return min(1.0, total * math.exp(log_front))
    b, c, d = x + 1 - a, 1e300, 1 / (x + 1 - a)  # continued fraction (Lentz) for Q
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = 1e-300 if abs(d) < 1e-300 else d
        c = b + an / c
        c = 1e-300 if abs(c) < 1e-300 else c
        d = 1 / d
        h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return max(0.0, 1.0 - math.exp(log_front) * h)


def poisson_sf(k: int, lam: float) -> float:
    """P(X ≥ k) for X ~ Poisson(lam)."""
    if k <= 0:
        return 1.0
    if lam <= 0:
        return 0.0
    return _gamma_p(k, lam)


def poisson_cdf(k: int, lam: float) -> float:
    """P(X ≤ k) for X ~ Poisson(lam)."""
    if k < 0:
        return 0.0
    return 1.0 - poisson_sf(k + 1, lam)


def bh_qvalues(pvalues: list[float], m: int) -> list[float]:
    """Benjamini–Hochberg q-values of `pvalues` among `m` tests (the others have p = 1)."""
    order = sorted(range(len(pvalues)), key=pvalues.__getitem__)
    q, running = [1.0] * len(pvalues), 1.0
    for rank in range(len(order), 0, -1):
        i = order[rank - 1]
        running = min(running, pvalues[i] * m / rank)
        q[i] = min(1.0, running)
    return q


def gi_star_z(focal: float, mean: float, sd: float, n: int, weights: int = 9) -> float:
    """Getis-Ord Gi* with binary weights (`weights` neighbours, itself included)."""
    if sd <= 0 or n <= weights:
        return 0.0
    spread = sd * math.sqrt((n * weights - weights ** 2) / (n - 1))
    return (focal - mean * weights) / spread


def _components(cells: set[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """Groups of cells touching at an edge or a corner."""
    seen: set[tuple[int, int]] = set()
    groups = []
    for start in sorted(cells):
        if start in seen:
            continue
        stack, group = [start], []
        seen.add(start)
        while stack:
            ix, iy = stack.pop()
            group.append((ix, iy))
            for dx in (-1, 0, 1):
                for dy in (-1, 0, 1):
                    nb = (ix + dx, iy + dy)
                    if nb in cells and nb not in seen:
                        seen.add(nb)
                        stack.append(nb)
        groups.append(sorted(group))
    return groups


def classify(hot_slices: int, window_count: int, baseline_count: int, scale: float,
             alpha: float) -> str:
    """new / intensifying / fading / persistent (module docstring, step 5); `scale` turns
    the baseline's count into the window's expectation (window days ÷ baseline days)."""
    if hot_slices == 0:
        return "new"
    expected = baseline_count * scale
    if poisson_sf(window_count, expected) < alpha:
        return "intensifying"
    if poisson_cdf(window_count, expected) < alpha:
        return "fading"
    return "persistent"


# --- the analysis --------------------------------------------------------------------------

_FRAME = sa.text("""
SELECT CASE WHEN ST_Y(c) >= 0 THEN 32600 ELSE 32700 END
           + least(60, floor((ST_X(c) + 180) / 6)::int + 1) AS srid,
       ST_Area(ST_Transform(b, CASE WHEN ST_Y(c) >= 0 THEN 32600 ELSE 32700 END
           + least(60, floor((ST_X(c) + 180) / 6)::int + 1))) AS area_m2
FROM (SELECT boundary AS b, ST_Centroid(boundary) AS c FROM areas WHERE id = :area_id) a
""")

# Counts per cell and slice, then each cell's 3×3 focal sum: one statement over the
# category's cases of the period (index ix_cases_category_reported), in the area's subtree.
_COUNTS = sa.text("""
WITH pts AS (
    SELECT floor(ST_X(g) / :size)::int AS ix, floor(ST_Y(g) / :size)::int AS iy,
           CASE WHEN c.reported_at >= :wstart THEN 0
                ELSE 1 + least(:k - 1, floor(extract(epoch FROM c.reported_at - :bstart)
                                             / :slice_s)::int) END AS slice
    FROM cases c CROSS JOIN LATERAL ST_Transform(c.location, :srid) AS g
    WHERE c.category_id = ANY(:cats) AND c.reported_at >= :bstart AND c.reported_at < :wend
      AND c.location IS NOT NULL AND c.state <> ALL(:excluded)
      AND c.area_id IN (SELECT id FROM areas WHERE path LIKE :path)
), counts AS (
    SELECT ix, iy, slice, count(*)::int AS n FROM pts GROUP BY ix, iy, slice
)
SELECT counts.ix + dx AS ix, counts.iy + dy AS iy, slice, sum(n)::int AS focal,
       coalesce(sum(n) FILTER (WHERE dx = 0 AND dy = 0), 0)::int AS own
FROM counts, generate_series(-1, 1) dx, generate_series(-1, 1) dy
GROUP BY 1, 2, 3
""")


def category_ids(s: Session, category: CaseCategory) -> list[int]:
    """The category and its 小类 (a 大类 counts all of them)."""
    return list(s.scalars(sa.select(CaseCategory.id).where(sa.or_(
        CaseCategory.id == category.id, CaseCategory.parent_id == category.id))))


def counts_statement(s: Session, cats: list[int], area: Area, settings: HotspotSettings,
                     cell_m: float, window_end: datetime) -> tuple[Any, dict]:
    """The counting statement and its parameters (the bench times it alone)."""
    srid, area_m2 = s.execute(_FRAME, {"area_id": area.id}).one()
    window_start = window_end - timedelta(days=settings.window_days)
    baseline_start = window_start - timedelta(weeks=settings.baseline_weeks)
    slice_s = (window_start - baseline_start).total_seconds() / settings.baseline_slices
    params = {"size": cell_m, "srid": srid, "wstart": window_start, "wend": window_end,
              "bstart": baseline_start, "k": settings.baseline_slices, "slice_s": slice_s,
              "cats": cats, "excluded": list(EXCLUDED_STATES), "path": f"{area.path}%",
              "area_m2": area_m2 or 0.0}
    return _COUNTS, params


def analyse(s: Session, cats: list[int], area: Area, settings: HotspotSettings,
            cell_m: float, window_end: datetime) -> Analysis:
    """Hot spots of these categories' cases in `area`'s subtree for the window ending at
    `window_end` (module docstring)."""
    stmt, params = counts_statement(s, cats, area, settings, cell_m, window_end)
    focal: dict[int, dict[tuple[int, int], int]] = {}
    own: dict[int, dict[tuple[int, int], int]] = {}
    for ix, iy, sl, f, o in s.execute(stmt, params):
        focal.setdefault(sl, {})[(ix, iy)] = f
        if o:
            own.setdefault(sl, {})[(ix, iy)] = o
    n = max(1, round(params["area_m2"] / cell_m ** 2), len(focal.get(0, {})))
    spots = _spots(focal, own, n, settings)
    return Analysis(params["srid"], cell_m, n, sum(own.get(0, {}).values()),
                    params["wstart"], window_end, params["bstart"], spots)


def _spots(focal: dict, own: dict, n: int, settings: HotspotSettings) -> list[Spot]:
    """Steps 3–5 of the module docstring over the counted cells."""
    window, window_own = focal.get(0, {}), own.get(0, {})
    total = sum(window_own.values())
    if total == 0:
        return []
    mean = total / n
    sd = math.sqrt(max(0.0, sum(v * v for v in window_own.values()) / n - mean ** 2))
    keys = [c for c, f in window.items() if f >= settings.min_count and window_own.get(c)]
    pvalues = [poisson_sf(window[c], 9 * mean) for c in keys]
    qvalues = bh_qvalues(pvalues, n)
    hot = {c: (p, q) for c, p, q in zip(keys, pvalues, qvalues, strict=True)
           if q <= settings.alpha}
    scale = settings.window_days / (settings.baseline_weeks * 7)
    slice_means = {sl: sum(own.get(sl, {}).values()) / n
                   for sl in range(1, settings.baseline_slices + 1)}
    spots = []
    for cells in _components(set(hot)):
        count = sum(window_own.get(c, 0) for c in cells)
        base = sum(own.get(sl, {}).get(c, 0) for c in cells
                   for sl in range(1, settings.baseline_slices + 1))
        hot_slices = sum(
            1 for sl, m in slice_means.items()
            if poisson_sf(sum(own.get(sl, {}).get(c, 0) for c in cells),
                          m * len(cells)) < settings.alpha)
        best = min(cells, key=lambda c: hot[c][0])
        spots.append(Spot(
            cells=cells, count=count, expected=round(len(cells) * mean, 4),
            baseline_expected=round(base * scale, 4),
            z=round(gi_star_z(window[best], mean, sd, n), 4), p=hot[best][0], q=hot[best][1],
            hot_slices=hot_slices,
            spot_class=classify(hot_slices, count, base, scale, settings.alpha)))
    return sorted(spots, key=lambda sp: (sp.p, -sp.count))
