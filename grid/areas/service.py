"""Areas (区域/网格): the scope filter, reading and editing the hierarchy, the grid contact
card, and locating a point. Memberships live in grid.areas.memberships, departments in
grid.areas.departments.

Scope (ARCHITECTURE §3): an actor's scope is the union of the subtrees of their
memberships. `in_scope()` is the one filter every context applies in SQL; outside it a
record does not exist (404). Ancestors of one's own areas are visible by name (a worker
sees which community and street their grid is in) but not editable.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any

import sqlalchemy as sa
from geoalchemy2 import Geography
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from grid.areas.models import Area, AreaLevel, Department, DepartmentMember, Membership
from server import audit, db, pii
from server.auth import permissions
from server.auth.actor import Actor, ActorEnricher
from server.auth.models import User
from server.errors import (
    Conflict,
    Invalid,
    NotFound,
    check_version,
    field_errors,
)

# --- scope ---------------------------------------------------------------------------------


def _scope_columns(user_id: Any) -> list[sa.Label]:
    """The user's membership paths and departments, as scalar subqueries (load_actor selects
    them with the account: one round trip per request)."""
    def paths(living: bool) -> sa.ScalarSelect:
        role = Membership.role == permissions.RESIDENT
        return (sa.select(sa.func.array_agg(Area.path))
                .join(Membership, Membership.area_id == Area.id)
                .where(Membership.user_id == user_id, role if living else ~role)
                .scalar_subquery())

    departments = (sa.select(sa.func.array_agg(DepartmentMember.department_id))
                   .where(DepartmentMember.user_id == user_id).scalar_subquery())
    return [paths(False).label("scope_paths"), paths(True).label("home_paths"),
            departments.label("scope_departments")]


def _with_scope(actor: Actor, row: Any) -> Actor:
    """A worker who also lives somewhere works only in their work areas: the community
    they live in is their scope only when living there is all they do (residents)."""
    works = not permissions.is_resident_only(actor)
    paths = (row.scope_paths if works else row.home_paths) or []
    return dataclasses.replace(actor, area_paths=_outermost(tuple(set(paths))),
                               department_ids=tuple(sorted(row.scope_departments or [])))


def resolve_scope(s: Session, actor: Actor) -> Actor:
    """Add the actor's membership paths and departments (for actors made outside a request;
    a request's actor gets them from load_actor's own query)."""
    return _with_scope(actor, s.execute(sa.select(*_scope_columns(actor.user_id))).one())


def _outermost(paths: tuple[str, ...]) -> tuple[str, ...]:
    """Drop paths inside another path of the set (their subtree is already covered)."""
    kept: list[str] = []
    for p in sorted(paths, key=len):
        if not any(p.startswith(k) for k in kept):
            kept.append(p)
    return tuple(sorted(kept))


# Adds scope to every actor the platform loads; wired in grid/areas/wiring.py.
SCOPE_ENRICHER = ActorEnricher(_scope_columns, _with_scope)


def placed_in_scope(actor: Actor) -> sa.ColumnElement[bool]:
    """SQL on User: every area membership and every department of the account lies in the
    actor's areas (an account placed nowhere yet qualifies). A district admin manages the
    people of its district, not a worker who also works in the next one."""
    elsewhere = sa.select(Membership.id).where(Membership.user_id == User.id,
                                               ~in_scope(Membership.area_id, actor))
    other_department = (sa.select(DepartmentMember.department_id)
                        .join(Department, Department.id == DepartmentMember.department_id)
                        .where(DepartmentMember.user_id == User.id,
                               ~in_scope(Department.service_area_id, actor)))
    return sa.and_(~sa.exists(elsewhere), ~sa.exists(other_department))



def in_scope(area_id_column: Any, actor: Actor) -> sa.ColumnElement[bool]:
    """THE scope filter: `area_id_column` lies in one of the actor's subtrees."""
    if actor.unrestricted:
        return sa.true()
    if not actor.area_paths:
        return sa.false()
    # A path is ids and dots (nothing to escape in LIKE); it may be a bind parameter (the
    # tile statements are built once per scope shape, grid.maps.tiles).
    subtree = sa.select(Area.id).where(sa.or_(*(Area.path.startswith(p)
                                                for p in actor.area_paths)))
    return area_id_column.in_(subtree)


def path_ids(path: Any) -> sa.ColumnElement:
    """SQL: the ids on a materialized path ("1.5.23." → {1,5,23}), top first. A constant
    path folds to a constant array at planning (index scans on `id = ANY(…)`)."""
    return sa.cast(sa.func.string_to_array(sa.func.rtrim(path, "."), "."),
                   ARRAY(sa.BigInteger))


def ids_on_path(path: str) -> list[int]:
    """The ids on a materialized path ("1.5.23." → [1, 5, 23]), top first; "" → []."""
    return [int(x) for x in path.rstrip(".").split(".")] if path else []


def _visible(actor: Actor) -> sa.ColumnElement[bool]:
    """Areas an actor may read: their subtrees plus the ancestors of those subtrees."""
    if actor.unrestricted:
        return sa.true()
    if not actor.area_paths:
        return sa.false()
    return sa.or_(in_scope(Area.id, actor),
                  *(Area.id == sa.any_(path_ids(p)) for p in actor.area_paths))


def subtree_ids(area: Area) -> sa.Select:
    """The ids of an area and everything below it (one indexed `path LIKE 'x.y.%'`)."""
    return sa.select(Area.id).where(Area.path.startswith(area.path, autoescape=True))


def visible_area_ids(actor: Actor) -> sa.Select:
    return sa.select(Area.id).where(_visible(actor))


def get_area(s: Session, actor: Actor, area_id: int, *, for_update: bool = False) -> Area:
    stmt = sa.select(Area).where(Area.id == area_id, _visible(actor))
    area = s.scalars(stmt.with_for_update() if for_update else stmt).first()
    if area is None:
        raise NotFound("No such area")
    return area


def get_area_by_code(s: Session, actor: Actor, code: str) -> Area:
    area = s.scalars(sa.select(Area).where(Area.code == code, _visible(actor))).first()
    if area is None:
        raise NotFound("No such area")
    return area


def manageable_area(s: Session, actor: Actor, area_id: int) -> Area:
    """An area the actor may change: inside their own subtrees (not an ancestor)."""
    actor.require("area:manage")
    area = s.scalars(
        sa.select(Area).where(Area.id == area_id, in_scope(Area.id, actor)).with_for_update()
    ).first()
    if area is None:
        raise NotFound("No such area")
    return area


def list_areas(s: Session, actor: Actor, filters: dict, page: Any) -> list[Area]:
    stmt = sa.select(Area).where(_visible(actor)).order_by(Area.code)
    if filters.get("parent_id") is not None:
        stmt = stmt.where(Area.parent_id == filters["parent_id"])
    if filters.get("level"):
        stmt = stmt.where(Area.level == filters["level"])
    if filters.get("q"):
        q = filters["q"]
        stmt = stmt.where(sa.or_(Area.name.contains(q, autoescape=True),
                                 Area.code.startswith(q, autoescape=True)))
    if filters.get("within_id") is not None:
        root = get_area(s, actor, filters["within_id"])
        stmt = stmt.where(Area.path.startswith(root.path, autoescape=True))
    return db.paginate(s, stmt, page)


def area_tree(s: Session, actor: Actor, root_id: int | None, depth: int) -> list[dict]:
    """The visible hierarchy as nested dicts (no geometry), from `root_id` or the top."""
    # children in the order of their codes (the official numbering), not of their ids
    stmt = sa.select(Area.id, Area.code, Area.name, Area.level, Area.parent_id, Area.path
                     ).where(_visible(actor)).order_by(Area.code)
    root_path = ""
    if root_id is not None:
        root_path = get_area(s, actor, root_id).path
        stmt = stmt.where(Area.path.startswith(root_path, autoescape=True))
    rows = s.execute(stmt).all()
    nodes = {r.id: {"id": r.id, "code": r.code, "name": r.name, "level": r.level,
                    "children": []} for r in rows}
    # Depth counts from the root asked for, or from the top-level areas (one dot in path).
    base_depth = root_path.count(".") if root_path else 1
    roots: list[dict] = []
    for r in rows:
        if depth and r.path.count(".") - base_depth > depth:
            continue
        if r.parent_id in nodes and r.id != root_id:
            nodes[r.parent_id]["children"].append(nodes[r.id])
        else:
            roots.append(nodes[r.id])
    return roots


def area_geometry(s: Session, area_id: int) -> dict | None:
    """The boundary as GeoJSON, built by PostGIS."""
    text = s.scalar(sa.select(sa.func.ST_AsGeoJSON(Area.boundary, 7)).where(Area.id == area_id))
    return json.loads(text) if text else None


def ancestors(s: Session, area: Area) -> list[Area]:
    ids = ids_on_path(area.path)
    # (not their boundaries: callers show id, code, name and level)
    rows = s.scalars(sa.select(Area).where(Area.id.in_(ids))
                     .options(sa.orm.defer(Area.boundary))).all()
    by_id = {a.id: a for a in rows}
    return [by_id[i] for i in ids if i in by_id]


# --- levels and writes ---------------------------------------------------------------------


def levels(s: Session) -> dict[str, AreaLevel]:
    return {lv.key: lv for lv in s.scalars(sa.select(AreaLevel).order_by(AreaLevel.rank))}


def check_code(level: AreaLevel, code: str, parent: Area | None,
               parent_level: AreaLevel | None) -> list[str]:
    """Why a code does not fit its level and parent (empty when it fits)."""
    problems = []
    if not code.isdigit() or len(code) != level.code_digits:
        problems.append(f"A {level.name} code has {level.code_digits} digits.")
    if parent is not None and parent_level is not None:
        if parent_level.rank >= level.rank:
            problems.append(f"A {level.name} cannot be inside a {parent_level.name}.")
        elif parent_level.code_digits < level.code_digits and not code.startswith(parent.code):
            problems.append(f"The code must start with the parent's code {parent.code}.")
    return problems


def refresh_area_m2(s: Session, area_ids: list[int]) -> None:
    """Recompute areas in m² (on the spheroid) after boundaries changed."""
    s.flush()
    s.execute(sa.update(Area).where(Area.id.in_(area_ids))
              .values(area_m2=sa.func.ST_Area(sa.cast(Area.boundary, Geography)))
              .execution_options(synchronize_session=False))


def _set_path(area: Area, parent: Area | None) -> None:
    area.path = f"{parent.path if parent else ''}{area.id}."


def move_area(s: Session, actor: Actor, area_id: int, new_parent_id: int,
              expected_version: int | None, new_code: str | None = None) -> Area:
    """Re-parent an area; its whole subtree follows (paths rewritten in one UPDATE).

    Codes nest (a community's code starts with its street's), so moving a community to
    another street usually needs its new code: with `new_code` the codes of the whole
    subtree are rewritten by prefix (330183001002005 → 330183002004005).
    """
    area = manageable_area(s, actor, area_id)
    check_version(area, expected_version)
    parent = manageable_area(s, actor, new_parent_id)
    if parent.path.startswith(area.path):
        raise Conflict("An area cannot move into its own subtree")
    lv = levels(s)
    problems = check_code(lv[area.level], new_code or area.code, parent, lv[parent.level])
    if problems:
        if new_code is None:
            raise Invalid(field_errors("parent_id", *problems, "Send the area's new `code` "
                                       "with the move; the codes below it follow."))
        raise Invalid(field_errors("code", *problems))
    old_path, old_parent_id, old_code = area.path, area.parent_id, area.code
    if new_code is not None and new_code != area.code:
        _recode_subtree(s, area, new_code)
    new_path = f"{parent.path}{area.id}."
    s.execute(
        sa.update(Area).where(Area.path.startswith(old_path, autoescape=True))
        .values(path=sa.func.concat(new_path, sa.func.substr(Area.path, len(old_path) + 1)))
        .execution_options(synchronize_session=False)
    )
    # one ORM update of the area itself: one version step for the whole move
    area.parent_id = parent.id
    area.code = new_code or area.code
    s.flush()
    s.refresh(area)
    changes: dict[str, Any] = {"parent_id": [old_parent_id, parent.id]}
    if area.code != old_code:
        changes["code"] = [old_code, area.code]
    audit.record(s, actor, "area_moved", "area", area.id, changes=changes)
    return area


def _recode_subtree(s: Session, area: Area, new_code: str) -> None:
    """Re-code what lies below `area` for its new code: codes that start with the old one
    get the new prefix. The caller sets `area.code` itself.

    Refuses (409) when the new code, or a code below it, belongs to an area elsewhere.
    """
    old_code = area.code
    clash = s.scalar(sa.select(Area.code).where(
        Area.code.startswith(new_code, autoescape=True),
        sa.not_(Area.path.startswith(area.path, autoescape=True))).order_by(Area.code).limit(1))
    if clash is not None:
        raise Conflict(f"The code {new_code} is taken: area {clash} already uses it"
                       + ("" if clash == new_code else " for an area below it"))
    s.execute(
        sa.update(Area).where(Area.path.startswith(area.path, autoescape=True),
                              Area.id != area.id,
                              Area.code.startswith(old_code, autoescape=True))
        .values(code=sa.func.concat(new_code, sa.func.substr(Area.code, len(old_code) + 1)))
        .execution_options(synchronize_session=False)
    )


def update_area(s: Session, actor: Actor, area_id: int, changes: dict,
                expected_version: int | None) -> Area:
    """Rename or re-code an area, or replace its boundary (validated like an import)."""
    from grid.areas import boundaries

    area = manageable_area(s, actor, area_id)
    check_version(area, expected_version)
    recorded: dict[str, Any] = {}
    if "name" in changes and changes["name"] != area.name:
        recorded["name"] = [area.name, changes["name"]]
        area.name = changes["name"]
    if "code" in changes and changes["code"] != area.code:
        lv = levels(s)
        parent = s.get(Area, area.parent_id) if area.parent_id else None
        problems = check_code(lv[area.level], changes["code"], parent,
                              lv[parent.level] if parent else None)
        if problems:
            raise Invalid(field_errors("code", *problems))
        recorded["code"] = [area.code, changes["code"]]
        _recode_subtree(s, area, changes["code"])  # the codes below follow
        area.code = changes["code"]
    if "boundary" in changes:
        geom = boundaries.validate_single(s, area, changes["boundary"],
                                          changes.get("repair", False))
        area.boundary = geom
        refresh_area_m2(s, [area.id])
        recorded["boundary"] = "replaced"
    if recorded:
        s.flush()  # updated_at follows (onupdate); no extra UPDATE, no extra version step
        s.refresh(area)
        audit.record(s, actor, "area_updated", "area", area.id, changes=recorded)
    return area


# --- grid card -----------------------------------------------------------------------------

# Counts other contexts contribute to the card (the registry adds households/population).
card_counters: list = []


def contacts(s: Session, area_ids: Any, roles: tuple[str, ...]) -> list[dict]:
    """The active members in `roles` of the areas `area_ids` (ids or a select of them), as
    cards and profiles show them: phone masked, with their area; by area code, role, name."""
    rows = s.execute(
        sa.select(Membership.role, User.id, User.display_name, User.phone_enc, Area.id,
                  Area.code, Area.name)
        .join(User, User.id == Membership.user_id).join(Area, Area.id == Membership.area_id)
        .where(Membership.area_id.in_(area_ids), User.is_active, Membership.role.in_(roles))
        .order_by(Area.code, Membership.role, User.display_name)).all()
    return [{"role": r[0], "user_id": r[1], "name": r[2],
             "phone": pii.mask_phone(pii.decrypt(r[3], "user.phone")),
             "area": {"id": r[4], "code": r[5], "name": r[6]}} for r in rows]


def grid_card(s: Session, actor: Actor, area_id: int, *, public: bool = False,
              boundary: bool = False) -> dict:
    """网格公示卡: the grid, its chain of areas (top first), its chief(s) and workers with
    masked phones, and counts from the registry when it is installed.

    `public` (MAP_PUBLIC_AREAS): an area the actor does not see (anonymous callers see
    none) answers too, as the public notice: the same names, chain and masked phones, but
    no account ids and no counts of people, which stay with actors who see the area.
    `boundary` adds the area's boundary (GeoJSON, by PostGIS)."""
    stmt = sa.select(Area).where(Area.id == area_id)
    area = s.scalars(stmt.where(_visible(actor))).first()
    private = area is not None
    if area is None and public:
        area = s.scalars(stmt).first()
    if area is None:
        raise NotFound("No such area")
    people = contacts(s, [area.id], permissions.AREA_CARD_ROLES)
    if not private:
        people = [{k: v for k, v in c.items() if k != "user_id"} for c in people]
    card = {
        "area": area,
        "chain": ancestors(s, area),
        "chiefs": [c for c in people if c["role"] == permissions.GRID_CHIEF],
        "workers": [c for c in people if c["role"] != permissions.GRID_CHIEF],
        "counts": {},
    }
    if boundary:
        card["boundary"] = area_geometry(s, area.id)
    for counter in card_counters if private else ():
        card["counts"].update(counter(s, area))
    return card


# --- locate --------------------------------------------------------------------------------


def finest_grid(*columns: Any, point: Any = None) -> sa.Select:
    """`columns` of the finest grid-level area whose boundary covers the point (:lon, :lat),
    or `point` (a WGS-84 geometry expression, e.g. a column of a list of points).

    ST_Covers: a point on a shared edge belongs to one of the grids instead of none.
    Uses the spatial index.
    """
    if point is None:
        point = sa.func.ST_SetSRID(sa.func.ST_MakePoint(
            sa.bindparam("lon", type_=sa.Float), sa.bindparam("lat", type_=sa.Float)), 4326)
    grid_rank = sa.select(AreaLevel.rank).where(AreaLevel.key == "grid").scalar_subquery()
    return (sa.select(*columns).join(AreaLevel, AreaLevel.key == Area.level)
            .where(sa.func.ST_Covers(Area.boundary, point), AreaLevel.rank >= grid_rank)
            .order_by(AreaLevel.rank.desc(), Area.id).limit(1))


# Built once: per-request construction of these expressions cost more than the lookup.
@functools.cache
def _grid_at_statement() -> sa.Select:
    # Callers want the grid's id, code and path, not its boundary (kilobytes per row).
    return finest_grid(Area).options(sa.orm.defer(Area.boundary))


@functools.cache
def _locate_statement() -> db.Prepared:
    """The grid and its ancestors (top first) in one round trip, without boundaries;
    prepared (planning it cost more than running it)."""
    grid = finest_grid(Area.path).cte("grid")
    ids = path_ids(grid.c.path)
    return db.Prepared(sa.select(Area.id, Area.code, Area.name, Area.level)
                       .join(grid, Area.id == sa.any_(ids))
                       .order_by(sa.func.array_position(ids, Area.id)))


def grid_at(s: Session, lon: float, lat: float) -> Area | None:
    """The finest grid-level area whose boundary covers a WGS-84 point, or None."""
    return s.scalars(_grid_at_statement(), {"lon": lon, "lat": lat}).first()


def locate(s: Session, lon: float, lat: float) -> list[sa.Row]:
    """The grid containing a WGS-84 point and its ancestors, top first: rows of (id, code,
    name, level)."""
    chain = _locate_statement().execute(s.connection(), {"lon": lon, "lat": lat}).all()
    if not chain:
        raise NotFound(f"The point ({lon:.6f}, {lat:.6f}) is outside every grid")
    return chain


def collector_grid(s: Session, actor: Actor, lon: float, lat: float) -> Area:
    """The grid where something was collected, which must be one of the actor's grids:
    422 naming the grid the point falls in otherwise (the one GPS rule of every module)."""
    grid = grid_at(s, lon, lat)
    if grid is None:
        raise Invalid(field_errors("location", "The point is outside every grid."))
    if not area_in_scope(s, actor, grid.id):
        raise Invalid(
            field_errors("location", f"The point falls in {grid.name} ({grid.code}), which is "
                                     "not one of your grids."),
            message=f"The point falls in {grid.name} ({grid.code}), outside your grids",
            grid={"id": grid.id, "code": grid.code, "name": grid.name},
        )
    return grid


def path_in_scope(actor: Actor, path: str) -> bool:
    """in_scope for an area whose path is at hand (no round trip): in one of the actor's
    subtrees."""
    return actor.unrestricted or any(path.startswith(p) for p in actor.area_paths)


def area_in_scope(s: Session, actor: Actor, area_id: int) -> bool:
    found = s.scalar(sa.select(Area.id).where(Area.id == area_id, in_scope(Area.id, actor)))
    return found is not None
