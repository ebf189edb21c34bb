"""The grid card (网格公示卡) counts the register: current households and population."""

from __future__ import annotations

from tests.fixtures.areas import C11, G111, G112
from tests.fixtures.http import at


def _counts(api_, area_id: int) -> dict:
    return api_.ok(api_.get(f"/areas/{area_id}/card"))["counts"]


def test_the_card_counts_current_households_and_people(api, worker, tree):
    assert _counts(worker, tree[G111]) == {"households": 0, "population": 0}
    first = worker.household(worker.house(worker.building()))
    second = worker.household(location=at(G111))
    for name in ("甲", "乙", "丙"):
        worker.person(first, name=name)
    leaver = worker.person(second, name="丁")
    worker.person(name="无户人员")  # counted in the population, not as a household
    neighbour = api("grid_worker", G112)
    neighbour.person(neighbour.household(location=at(G112)), name="邻居")
    assert _counts(worker, tree[G111]) == {"households": 2, "population": 5}

    # ending people and households takes them off the card
    worker.ok(worker.post(f"/persons/{leaver['id']}/end", {"status": "moved_out",
                                                           "version": 1}))
    worker.ok(worker.post(f"/households/{second['id']}/end", {"reason": "迁出",
                                                              "version": 1}))
    assert _counts(worker, tree[G111]) == {"households": 1, "population": 4}

    # the community's card counts its grids
    chief = api("grid_chief", C11)
    assert _counts(chief, tree[C11]) == {"households": 2, "population": 5}
    assert _counts(chief, tree[G112]) == {"households": 1, "population": 1}
