"""Profiles (画像): a person, a household, a building or an area in one request.

Rules (those of the registry, reused, not re-implemented):
- scope: every record is read through the registry's `scope.get_record` / `scope.scoped`,
  `visits.scoped_visits`, `cases.scope.visible` and `areas.in_scope`: outside the scope a
  profile does not exist (404), and what a profile lists is limited to the scope;
- masking: persons show their masked ID number and phone; `reveal=True` goes through
  `people.reveal_person` (person:read_pii, a purpose, one audit row): there is no second
  unmasking path; key-person tags (重点人员) and their counts only with person:read_key_tags,
  and a person profile that shows key-person tags is itself an audit row
  (`person_profile_read`), since it is sensitive personal information;
- statements: each profile runs a fixed number of queries whatever the number of members,
  rooms, visits or cases (lists are capped at LIST_LIMIT, newest first).

Sections are pluggable: `profile_sections[kind]` lists (name, function) that add a part
to a profile; the services module (issue 8) adds the person's "bookings" this way
(grid/services/profile_section.py, added in grid/services/wiring.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from geoalchemy2 import Geography
from sqlalchemy.orm import Session

from grid.areas import service as areas
from grid.areas.models import Area
from grid.cases.clock import overdue_sql
from grid.cases.models import OPEN_STATES, Case, CaseCategory, light_sql
from grid.cases.scope import visible
from grid.registry import people, scope, tags
from grid.registry.models import (
    CARE_TAGS,
    KEY_TAGS,
    POPULATION_TYPES,
    Building,
    House,
    Household,
    Organisation,
    Person,
    PersonTag,
)
from grid.visits import service as visits
from grid.visits.models import Visit
from server import audit, clock, pii
from server.auth import permissions
from server.auth.actor import Actor
from server.auth.models import User

LIST_LIMIT = 50  # visits and cases listed per profile (newest first)
NEARBY_M = 50.0  # "cases nearby": within this distance of the building
COVERAGE_DAYS = 30
AGE_BANDS = (("0-17", 0, 17), ("18-59", 18, 59), ("60-79", 60, 79), ("80+", 80, 200))
KEY_TAGS_PERMISSION = "person:read_key_tags"

Section = Callable[[Session, Actor, Any], Any]
profile_sections: dict[str, list[tuple[str, Section]]] = {
    "person": [], "household": [], "building": [], "area": []}


def _sections(s: Session, actor: Actor, kind: str, record: Any) -> dict:
    return {name: build(s, actor, record) for name, build in profile_sections[kind]}


# --- shared parts --------------------------------------------------------------------------


def _members(s: Session, actor: Actor, household_ids: list[int]) -> list[Person]:
    """Present members of these households, with the tags the actor may see (2 queries)."""
    members = list(s.scalars(
        scope.scoped(Person, actor)
        .where(Person.household_id.in_(household_ids or [-1]), Person.ended_at.is_(None))
        .order_by(Person.household_id, Person.relation_to_head != "head", Person.id)))
    return tags.with_tags(s, actor, members)


def _visits(s: Session, actor: Actor, *conditions: Any) -> list[Visit]:
    return list(s.scalars(visits.scoped_visits(actor).where(sa.or_(*conditions))
                          .order_by(Visit.visited_at.desc(), Visit.id.desc())
                          .limit(LIST_LIMIT)))


def _cases(s: Session, actor: Actor, near: Any | None, reporter_ids: Any | None = None
           ) -> list[dict]:
    """Cases the actor may see: within NEARBY_M of `near` (a WGS-84 point expression), or
    reported by `reporter_ids` (a SELECT of user ids); newest first."""
    relation = []
    if reporter_ids is not None:
        relation.append((Case.reporter_id.in_(reporter_ids), "reported"))
    if near is not None:
        relation.append((sa.func.ST_DWithin(sa.cast(Case.location, Geography),
                                            sa.cast(near, Geography), NEARBY_M), "nearby"))
    if not relation:
        return []
    rows = s.execute(
        sa.select(Case.id, Case.code, Case.state, Case.address, Case.reported_at,
                  Case.due_at, CaseCategory.code.label("category"),
                  CaseCategory.name.label("category_name"), light_sql().label("light"),
                  Case.state.in_(OPEN_STATES).label("open"),
                  sa.case(*relation).label("relation"))
        .join(CaseCategory, CaseCategory.id == Case.category_id)
        .where(visible(actor), sa.or_(*(cond for cond, _ in relation)))
        .order_by(Case.reported_at.desc(), Case.id.desc()).limit(LIST_LIMIT))
    return [dict(r._mapping) for r in rows]


def _grid(s: Session, actor: Actor, area_id: int) -> dict:
    """The record's grid with its chief(s) and workers, phones masked (the grid card)."""
    return areas.grid_card(s, actor, area_id)


def _has_key_tags(persons: list[Person]) -> bool:
    return any(tag.tag in KEY_TAGS for p in persons for tag in getattr(p, "tags", []))


# --- person --------------------------------------------------------------------------------


def resident_accounts(person: Person) -> sa.Select | None:
    """SELECT of the resident account with the person's phone (what links a registered
    person to what they did in the app: cases reported, bookings), or None without a phone.
    The user blind index is a different domain: the phone is decrypted in memory to compute
    it, never returned or logged."""
    phone = pii.decrypt(person.phone_enc, scope.PHONE_FIELD)
    if not phone:
        return None
    return sa.select(User.id).where(User.phone_bidx == pii.blind_index(phone, "user.phone"))


def person_profile(s: Session, actor: Actor, person_id: int,
                   reveal: audit.Purpose | None = None) -> dict:
    """人员画像: the person (masked unless revealed), household and members, house and
    building, grid and its workers, tags with their periods, visits, cases reported by
    the person's resident account or near their building, and the plugged sections.
    `reveal`: the stated purpose of showing the ID number and phone in clear."""
    # the reveal first: a refused one (out of scope too) is audited there
    revealed = people.reveal_person(s, actor, person_id, reveal) if reveal else None
    person = scope.get_record(s, actor, Person, person_id)
    home = s.execute(
        sa.select(Household, House, Building)
        .outerjoin(House, House.id == Household.house_id)
        .outerjoin(Building, Building.id == House.building_id)
        .where(Household.id == person.household_id,
               areas.in_scope(Household.area_id, actor))).first()
    household, house, building = home if home is not None else (None, None, None)
    members = _members(s, actor, [household.id] if household else [])
    if person not in members:  # ended, or without a household: tags still shown
        tags.with_tags(s, actor, [person])
    account = resident_accounts(person)
    near = (sa.select(sa.func.coalesce(Building.location, sa.func.ST_PointOnSurface(
        Building.footprint))).where(Building.id == building.id).scalar_subquery()
        if building is not None else None)
    visit_on = [Visit.person_id == person.id]
    if household is not None:
        visit_on.append(Visit.household_id == household.id)
    profile = {
        "person": person, "revealed": revealed,
        "household": household, "members": [m for m in members if m.id != person.id],
        "house": house, "building": building,
        "grid": _grid(s, actor, person.area_id),
        "tags": person.tags,
        "visits": _visits(s, actor, *visit_on),
        "cases": _cases(s, actor, near, account),
        **_sections(s, actor, "person", person),
    }
    if _has_key_tags([person]):
        audit.record(s, actor, "person_profile_read", "person", person.id,
                     changes={"sections": ["key_tags"]})
    return profile


# --- household and building ----------------------------------------------------------------


def _point_of(building_id: int) -> Any:
    return (sa.select(sa.func.coalesce(Building.location,
                                       sa.func.ST_PointOnSurface(Building.footprint)))
            .where(Building.id == building_id).scalar_subquery())


def household_profile(s: Session, actor: Actor, household_id: int) -> dict:
    """户画像: the household, its house and building, members with their (visible) tags,
    visits to it or its members, cases near its building."""
    household = scope.get_record(s, actor, Household, household_id)
    home = s.execute(sa.select(House, Building).join(Building, Building.id == House.building_id)
                     .where(House.id == household.house_id)).first()
    house, building = home if home is not None else (None, None)
    members = _members(s, actor, [household.id])
    member_ids = sa.select(Person.id).where(Person.household_id == household.id)
    return {
        "household": household, "house": house, "building": building, "members": members,
        "grid": _grid(s, actor, household.area_id),
        "visits": _visits(s, actor, Visit.household_id == household.id,
                          Visit.person_id.in_(member_ids)),
        "cases": _cases(s, actor, _point_of(building.id) if building is not None else None),
        **_sections(s, actor, "household", household),
    }


def building_profile(s: Session, actor: Actor, building_id: int) -> dict:
    """楼栋画像: rooms with their occupancy, households, organisations inside, visits to
    its households and organisations, cases nearby."""
    building = scope.get_record(s, actor, Building, building_id)
    households_of_house = (sa.select(sa.func.count()).where(
        Household.house_id == House.id, Household.ended_at.is_(None)).scalar_subquery())
    persons_of_house = (sa.select(sa.func.count()).select_from(Person)
                        .join(Household, Household.id == Person.household_id)
                        .where(Household.house_id == House.id, Person.ended_at.is_(None),
                               Person.status == "present").scalar_subquery())
    rooms = [{"house": house, "households": hh, "persons": n} for house, hh, n in s.execute(
        scope.scoped(House, actor).add_columns(households_of_house, persons_of_house)
        .where(House.building_id == building.id, House.ended_at.is_(None))
        .order_by(House.unit, House.floor, House.room, House.id))]
    house_ids = sa.select(House.id).where(House.building_id == building.id)
    households = list(s.scalars(scope.scoped(Household, actor).where(
        Household.house_id.in_(house_ids), Household.ended_at.is_(None)).order_by(Household.id)))
    organisations = list(s.scalars(scope.scoped(Organisation, actor).where(
        Organisation.building_id == building.id, Organisation.ended_at.is_(None))
        .order_by(Organisation.id)))
    household_ids = sa.select(Household.id).where(Household.house_id.in_(house_ids))
    org_ids = sa.select(Organisation.id).where(Organisation.building_id == building.id)
    occupied = sum(1 for r in rooms if r["households"])
    return {
        "building": building, "rooms": rooms, "households": households,
        "organisations": organisations,
        "occupancy": {"rooms": len(rooms), "occupied": occupied,
                      "empty": len(rooms) - occupied,
                      "households": sum(r["households"] for r in rooms),
                      "persons": sum(r["persons"] for r in rooms),
                      "by_use": _count_by(r["house"].use for r in rooms)},
        "grid": _grid(s, actor, building.area_id),
        "visits": _visits(s, actor, Visit.household_id.in_(household_ids),
                          Visit.organisation_id.in_(org_ids)),
        "cases": _cases(s, actor, _point_of(building.id)),
        **_sections(s, actor, "building", building),
    }


def _count_by(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


# --- areas: a grid, and the same numbers rolled up -----------------------------------------


def years_before(today: date, years: int) -> date:
    """The day `years` years before `today` as age() counts birthdays: someone born on it
    is exactly `years` old today, someone born a day later is not (29 February → 28)."""
    try:
        return today.replace(year=today.year - years)
    except ValueError:  # today is 29 February, that year has none
        return today.replace(year=today.year - years, day=28)


def area_profile(s: Session, actor: Actor, area_id: int, today: date) -> dict:
    """网格画像 (and 社区/街道/区 roll-ups): population by type, age band and sex, care-group
    and (with the permission) key-person counts, households, buildings, organisations,
    open and overdue cases, visit coverage over the last 30 days, the grid workers, and
    the same headline numbers per child area. Everything within the actor's scope."""
    actor.require("registry:read")
    area = areas.get_area(s, actor, area_id)
    subtree = areas.subtree_ids(area).where(areas.in_scope(Area.id, actor))
    present = (Person.area_id.in_(subtree), Person.ended_at.is_(None),
               Person.status == "present")
    totals = _area_totals(s, actor, subtree, today)
    households_n = totals["households"]
    return {
        "area": area,
        "chain": areas.ancestors(s, area),
        "population": _population(s, actor, present, today),
        **_tag_counts(s, actor, present, today),
        **{k: v for k, v in totals.items() if k not in ("households_visited", "visits")},
        "visit_coverage": {"days": COVERAGE_DAYS, "visits": totals["visits"],
                           "households_visited": totals["households_visited"],
                           "rate": round(totals["households_visited"] / households_n, 4)
                           if households_n else None},
        "workers": areas.contacts(s, areas.subtree_ids(area), permissions.GRID_ROLES),
        "children": _children(s, actor, area),
        **_sections(s, actor, "area", area),
    }


def _population(s: Session, actor: Actor, present: tuple, today: date) -> dict:
    """People present, by population type and by age band × sex."""
    # age(today, birth) ≤ hi ⟺ birth is after the day `hi + 1` years before today: plain
    # date comparisons (an index-only scan feeds them) instead of age() on every person.
    # Without person:read_pii, ages are counted from the birth year (this year − birth
    # year ≤ hi ⟺ born on or after 1 January of year − hi): counts that move on birthdays
    # would tell, day by day, whose birthday it was (server.pii.mask_id_number).
    by_day = actor.can(scope.READ_PII)
    band = sa.case((Person.birth_date.is_(None), "unknown"),
                   *[(Person.birth_date > years_before(today, hi + 1) if by_day
                      else Person.birth_date >= date(today.year - hi, 1, 1), name)
                     for name, _, hi in AGE_BANDS], else_="unknown")
    rows = s.execute(sa.select(Person.population_type, sa.func.coalesce(Person.sex, "?"),
                               band, sa.func.count())
                     .where(*present).group_by(Person.population_type, Person.sex, band)).all()
    by_type = {k: 0 for k in POPULATION_TYPES}
    by_age_sex: dict[str, dict[str, int]] = {name: {"M": 0, "F": 0, "?": 0}
                                             for name, _, _ in (*AGE_BANDS, ("unknown", 0, 0))}
    for ptype, sex, age, n in rows:
        by_type[ptype] = by_type.get(ptype, 0) + n
        by_age_sex[age][sex] += n
    return {"total": sum(by_type.values()), "by_type": by_type, "by_age_sex": by_age_sex}


def _tag_counts(s: Session, actor: Actor, present: tuple, today: date) -> dict:
    """Care groups (关爱对象) and, for those who may see them, key persons, by tag."""
    rows = s.execute(
        sa.select(PersonTag.kind, PersonTag.tag, sa.func.count(sa.distinct(PersonTag.person_id)))
        .join(Person, Person.id == PersonTag.person_id)
        .where(*present, *tags.tags_visible_to(actor),
               sa.or_(PersonTag.end_date.is_(None), PersonTag.end_date >= today),
               PersonTag.start_date <= today)
        .group_by(PersonTag.kind, PersonTag.tag)).all()
    care = {tag: 0 for tag in CARE_TAGS}
    key = {tag: 0 for tag in KEY_TAGS} if actor.can(KEY_TAGS_PERMISSION) else None
    for kind, tag, n in rows:
        (care if kind == "care" else key or {})[tag] = n
    return {"care_groups": care, "key_persons": key}


def _area_totals(s: Session, actor: Actor, subtree: sa.Select, today: date) -> dict:
    """Households, buildings, houses, organisations, open and overdue cases, and the
    visits of the last COVERAGE_DAYS, in one statement."""

    def live(model: Any) -> tuple:
        return model.area_id.in_(subtree), model.ended_at.is_(None)

    since = today - timedelta(days=COVERAGE_DAYS)
    # midnight of `since` where `today` is counted (Beijing), not in the session's zone
    # (UTC): that began at 08:00 and lost the first day's morning visits. As a range an
    # index can take.
    since_at = datetime.combine(since, time.min, clock.local_zone())
    households = sa.select(Household.id).where(*live(Household))
    # the households visited, or with a member visited, in the period: from the period's
    # visits (ix_visits_at) to their households, not every household against every visit
    recent = sa.union(
        sa.select(Visit.household_id.label("id"))
        .where(Visit.household_id.is_not(None), Visit.visited_at >= since_at),
        sa.select(Person.household_id).join(Visit, Visit.person_id == Person.id)
        .where(Visit.visited_at >= since_at))
    visited = households.where(Household.id.in_(recent))
    open_cases = sa.select(Case.id).where(Case.area_id.in_(subtree), visible(actor),
                                          Case.state.in_(OPEN_STATES))

    def count(stmt: sa.Select) -> Any:
        return sa.select(sa.func.count()).select_from(stmt.subquery()).scalar_subquery()

    return s.execute(sa.select(
        count(households).label("households"),
        count(sa.select(Building.id).where(*live(Building))).label("buildings"),
        count(sa.select(House.id).where(*live(House))).label("houses"),
        count(sa.select(Organisation.id).where(*live(Organisation))).label("organisations"),
        count(open_cases).label("open_cases"),
        count(open_cases.where(overdue_sql())).label("overdue_cases"),
        count(visited).label("households_visited"),
        count(sa.select(Visit.id).where(Visit.area_id.in_(subtree), Visit.visited_at >= since_at))
        .label("visits"))).one()._asdict()


def _children(s: Session, actor: Actor, area: Area) -> list[dict]:
    """The headline numbers per child area (a street's communities, a community's
    grids…), within the actor's scope: one grouped query."""
    child = sa.select(Area.id, Area.code, Area.name, Area.level, Area.path).where(
        Area.parent_id == area.id).subquery("child")
    below = sa.orm.aliased(Area)

    def n(model: Any, *extra: Any) -> Any:
        # correlated to `child` directly (a nested IN would lose the correlation)
        return (sa.select(sa.func.count()).select_from(model)
                .join(below, below.id == model.area_id)
                .where(below.path.startswith(child.c.path), areas.in_scope(model.area_id, actor),
                       *extra).scalar_subquery())

    rows = s.execute(sa.select(
        child.c.id, child.c.code, child.c.name, child.c.level,
        n(Person, Person.ended_at.is_(None), Person.status == "present").label("population"),
        n(Household, Household.ended_at.is_(None)).label("households"),
        n(Case, visible(actor), Case.state.in_(OPEN_STATES)).label("open_cases"),
    ).order_by(child.c.code)).all()
    return [r._asdict() for r in rows]
