"""The pure parts of the hot-spot method: Poisson tails, Benjamini–Hochberg, Gi*, the
grouping of cells and the classes."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from grid.insights import hotspots


def _sf_by_sum(k: int, lam: float) -> float:
    return 1.0 - sum(math.exp(-lam) * lam ** j / math.factorial(j) for j in range(k))


@given(st.integers(0, 60), st.floats(0.01, 40))
def test_poisson_tails_equal_the_sums(k, lam):
    sf = hotspots.poisson_sf(k, lam)
    assert math.isclose(sf, _sf_by_sum(k, lam), rel_tol=1e-6, abs_tol=1e-12)
    assert math.isclose(hotspots.poisson_cdf(k, lam) + hotspots.poisson_sf(k + 1, lam), 1.0,
                        abs_tol=1e-9)


def test_poisson_edges():
    assert hotspots.poisson_sf(0, 3.0) == 1.0
    assert hotspots.poisson_sf(1, 0.0) == 0.0
    assert hotspots.poisson_sf(30, 0.5) < 1e-30


@given(st.lists(st.floats(0, 1), min_size=1, max_size=50), st.integers(0, 100))
def test_bh_qvalues_are_monotone_and_bounded(pvalues, extra):
    m = len(pvalues) + extra
    q = hotspots.bh_qvalues(pvalues, m)
    assert all(p <= qi <= 1.0 or qi == 1.0 for p, qi in zip(pvalues, q, strict=True))
    ranked = sorted(zip(pvalues, q, strict=True))
    assert all(a[1] <= b[1] for a, b in zip(ranked, ranked[1:], strict=False))


def test_bh_by_hand():
    # p sorted: 0.001, 0.01, 0.03, 0.5 among m = 4: q = 0.004, 0.02, 0.04, 0.5
    q = hotspots.bh_qvalues([0.03, 0.001, 0.5, 0.01], 4)
    assert [round(x, 6) for x in q] == [0.04, 0.004, 0.5, 0.02]


def test_gi_star_by_hand():
    # n = 100 cells, mean 1, sd 1, focal sum 18 over 9 cells:
    # z = (18 - 9) / (1 * sqrt((900 - 81) / 99)) = 9 / 2.876…
    assert math.isclose(hotspots.gi_star_z(18, 1.0, 1.0, 100), 9 / math.sqrt(819 / 99))


def test_cells_touching_at_a_corner_are_one_spot():
    groups = hotspots._components({(0, 0), (1, 1), (5, 5), (5, 6)})
    assert sorted(groups) == [[(0, 0), (1, 1)], [(5, 5), (5, 6)]]


def test_classes():
    scale = 30 / 84
    assert hotspots.classify(0, 20, 0, scale, 0.05) == "new"
    assert hotspots.classify(3, 40, 24, scale, 0.05) == "intensifying"
    assert hotspots.classify(4, 12, 100, scale, 0.05) == "fading"
    assert hotspots.classify(4, 15, 42, scale, 0.05) == "persistent"
