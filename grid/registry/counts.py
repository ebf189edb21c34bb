"""How many live where: a grid card's households and population, and each building's
occupancy (households, present persons) kept by triggers (migration 0010) in a roll-up that a
periodic task folds and recounts. Importing this module registers the card counter and the
two periodic tasks (grid.registry.views imports it)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.areas import service as areas
from grid.areas.models import Area
from grid.registry.models import BuildingOccupancy, Household, Person

# --- grid card counts ----------------------------------------------------------------------


def grid_counts(s: Session, area: Area) -> dict:
    """Households and population (present, not ended) in an area's subtree."""
    subtree = areas.subtree_ids(area)
    households = s.scalar(sa.select(sa.func.count()).select_from(Household).where(
        Household.area_id.in_(subtree), Household.ended_at.is_(None)))
    population = s.scalar(sa.select(sa.func.count()).select_from(Person).where(
        Person.area_id.in_(subtree), Person.ended_at.is_(None)))
    return {"households": households, "population": population}



# --- building occupancy (kept by triggers, migration 0010) ---------------------------------


def building_counts(building_id: Any) -> tuple[Any, Any, Any]:
    """Households and present persons of the building `building_id` (a column): a LATERAL
    subquery adding up its rows of the trigger-kept roll-up, to join ON true (it has one row
    per building, zeros included), and its two columns. One index lookup a building for
    both numbers (two scalar subqueries cost the benchmark's z14 centre tile, 2,104
    buildings, ~6 ms more: bench/README.md "maps")."""
    t = BuildingOccupancy
    occupancy = (sa.select(sa.func.coalesce(sa.func.sum(t.households), 0).label("households"),
                           sa.func.coalesce(sa.func.sum(t.persons), 0).label("persons"))
                 .where(t.building_id == building_id).lateral("occupancy"))
    return occupancy, occupancy.c.households, occupancy.c.persons


def compact_occupancy(s: Session) -> dict:
    """Fold each building's rows of the occupancy roll-up into one (the triggers append a
    row per change). Rows appended by transactions still running are not seen and are
    folded next time; two runs at once fold disjoint rows. Buildings adding up to nobody
    are dropped."""
    _occupancy_lock(s)
    t = BuildingOccupancy.__table__
    dup = (sa.select(t.c.building_id).group_by(t.c.building_id)
           .having(sa.func.count() > 1).cte("dup"))
    gone = (sa.delete(t).where(t.c.building_id == dup.c.building_id)
            .returning(*t.c).cte("gone"))
    households, persons = sa.func.sum(gone.c.households), sa.func.sum(gone.c.persons)
    folded = s.execute(sa.insert(t).from_select(
        ["building_id", "households", "persons"],
        sa.select(gone.c.building_id, households, persons).group_by(gone.c.building_id)
        .having(sa.or_(households != 0, persons != 0))).returning(t.c.id)).all()
    return {"folded_buildings": len(folded)} if folded else {}


# The whole count from the register. It must count what migration 0010's triggers count
# (and 0010's FULL, which filled the table): a change to the rule needs a new migration for
# the triggers too, or the daily recount "corrects" the triggers every day.
_OCCUPANCY_RECOUNT = """
WITH gone AS (DELETE FROM building_occupancy RETURNING building_id, households, persons),
kept AS (SELECT building_id, sum(households) AS households, sum(persons) AS persons
         FROM gone GROUP BY building_id),
fresh AS (
    SELECT hs.building_id, count(*) AS households, coalesce(sum(p.n), 0) AS persons
    FROM houses hs
    JOIN households h ON h.house_id = hs.id AND h.ended_at IS NULL
    LEFT JOIN (SELECT household_id, count(*) AS n FROM persons
               WHERE ended_at IS NULL AND status = 'present' GROUP BY household_id) p
           ON p.household_id = h.id
    WHERE hs.ended_at IS NULL
    GROUP BY hs.building_id),
put AS (INSERT INTO building_occupancy (building_id, households, persons)
        SELECT building_id, households, persons FROM fresh RETURNING 1)
SELECT (SELECT count(*) FROM put),
       (SELECT count(*) FROM kept FULL JOIN fresh USING (building_id)
        WHERE coalesce(kept.households, 0) <> coalesce(fresh.households, 0)
           OR coalesce(kept.persons, 0) <> coalesce(fresh.persons, 0))
"""


def _occupancy_lock(s: Session) -> None:
    # folding and recounting one after the other: a recount would not see (and so not
    # delete) the row a concurrent fold inserts, and would count its persons twice
    s.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('building_occupancy'))"))


def recount_occupancy(s: Session) -> dict:
    """Replace the occupancy roll-up with a count of the register, in one statement (one
    snapshot: a write committed after it keeps its appended row, one before it is in the
    count). The triggers keep the table exact change by change (tests compare both after
    every kind of write); two transactions racing on the same people under READ COMMITTED
    (a member joining a household another ends) could each add what the other's change
    makes wrong (reasoned, not reproduced in a test), and this puts that right."""
    _occupancy_lock(s)
    buildings, drifted = s.execute(sa.text(_OCCUPANCY_RECOUNT)).one()
    return {"recounted_buildings": buildings, "drifted": drifted} if drifted else {}

