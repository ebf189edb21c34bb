"""Roles and the permissions they grant, in one table a reader can see at a glance.

Columns are roles; an `x` grants the row's permission. Area scope (which grids, streets…)
is separate: a permission says *what* an actor may do, their memberships say *where*.
"""

from __future__ import annotations

ROLES = (
    "resident",  # 居民
    "grid_worker",  # 网格员
    "grid_chief",  # 网格长
    "community_staff",  # 社区工作人员
    "street_dispatcher",  # 街道指挥中心 受理员/派遣员
    "department_handler",  # 职能部门处置人员
    "district_admin",  # 区级管理员 / 领导
    "auditor",  # 审计
    "admin",  # 系统管理员
)

# fmt: off
_MATRIX = """
permission             res wrk chf stf dsp hdl dad aud adm
user:manage             .   .   .   .   .   .   x   .   x
audit:read              .   .   .   .   .   .   .   x   x
area:read               x   x   x   x   x   x   x   x   x
area:manage             .   .   .   .   .   .   x   .   x
membership:manage       .   .   .   .   .   .   x   .   x
registry:read           .   x   x   x   x   .   x   .   .
registry:write          .   x   x   x   .   .   x   .   .
registry:import         .   .   .   x   .   .   x   .   .
registry:export         .   .   x   x   .   .   x   .   .
person:read_pii         .   x   x   x   .   .   x   .   .
person:read_key_tags    .   .   x   .   .   .   x   .   .
visit:write             .   x   x   x   .   .   .   .   .
case:report             x   x   x   x   x   .   .   .   .
case:read               x   x   x   x   x   x   x   .   .
case:accept             .   .   .   .   x   .   x   .   .
case:dispatch           .   .   .   .   x   .   x   .   .
case:handle             .   x   .   .   .   x   .   .   .
case:verify             x   x   x   .   x   .   .   .   .
case:close              .   .   .   .   x   .   x   .   .
case:approve            .   .   .   .   x   .   x   .   .
case:merge              .   .   .   .   x   .   x   .   .
case:evaluate           x   .   .   .   .   .   .   .   .
stats:read              .   .   x   x   x   x   x   .   .
notice:broadcast        .   .   .   x   x   .   x   .   .
service:manage          .   .   .   x   x   .   x   .   .
service:book            x   .   .   .   .   .   .   .   .
notification:admin      .   .   .   .   .   .   .   .   x
apiclient:manage        .   .   .   .   .   .   .   .   x
category:manage         .   .   .   .   .   .   .   .   x
warning:read            .   .   x   x   x   x   x   .   x
warning:act             .   .   .   x   x   .   x   .   .
indicator:manage        .   .   .   .   .   .   x   .   x
record:break_glass      .   .   x   x   x   .   x   .   .
grant:review            .   .   .   .   .   .   .   x   .
declaration:submit      x   .   .   .   .   .   .   .   .
declaration:decide      .   x   x   x   .   .   .   .   .
"""
# fmt: on


def _parse(matrix: str) -> dict[str, frozenset[str]]:
    lines = [ln.split() for ln in matrix.strip().splitlines()]
    header, rows = lines[0][1:], lines[1:]
    if len(header) != len(ROLES):
        raise ValueError("permission matrix header does not match ROLES")
    grants: dict[str, set[str]] = {role: set() for role in ROLES}
    for row in rows:
        permission, marks = row[0], row[1:]
        if len(marks) != len(ROLES) or set(marks) - {"x", "."}:
            raise ValueError(f"bad permission row: {permission}")
        for role, mark in zip(ROLES, marks, strict=True):
            if mark == "x":
                grants[role].add(permission)
    return {role: frozenset(perms) for role, perms in grants.items()}


ROLE_PERMISSIONS: dict[str, frozenset[str]] = _parse(_MATRIX)
PERMISSIONS: frozenset[str] = frozenset().union(*ROLE_PERMISSIONS.values())

# The platform's own administrator (系统管理员): acts everywhere; at least one must stay active.
ADMIN = "admin"

# Which roles a holder of a role may grant or revoke (as account roles and as memberships).
# A district admin hands out the roles below its own; the district admin role itself, the
# auditor who watches administrators, and the administrator are granted by an admin only.
GRANTABLE_BY: dict[str, frozenset[str]] = {
    ADMIN: frozenset(ROLES),
    "district_admin": frozenset({"resident", "grid_worker", "grid_chief", "community_staff",
                                 "street_dispatcher", "department_handler"}),
}
if not all(granted <= set(ROLES) for granted in GRANTABLE_BY.values()):
    raise ValueError("GRANTABLE_BY names a role that is not in ROLES")


# --- warnings: who hears of an area's early warnings (预警) and gets its weekly report ---
# The members of a warning's area in these roles are told (a red one: also those of the
# area above); the members of a street or district in REPORT_RECIPIENTS get its weekly
# leaders' report (领导周报) in their inbox.
WARNING_RECIPIENTS = ("grid_chief", "community_staff", "street_dispatcher", "district_admin")
REPORT_RECIPIENTS = ("street_dispatcher", "district_admin")
# --- end warnings ---


def permissions_for(roles: frozenset[str] | set[str]) -> frozenset[str]:
    return frozenset().union(*(ROLE_PERMISSIONS.get(r, frozenset()) for r in roles))


def grantable_by(roles: frozenset[str] | set[str]) -> frozenset[str]:
    """The roles an actor holding `roles` may grant or revoke."""
    return frozenset().union(*(GRANTABLE_BY.get(r, frozenset()) for r in roles))


# --- roles by name, and what holding them means --------------------------------------------
# The only place role names are written: elsewhere code asks these constants and
# predicates (ARCHITECTURE.md §3), so renaming or splitting a role is one edit here.

RESIDENT, GRID_WORKER, GRID_CHIEF, COMMUNITY_STAFF = (
    "resident", "grid_worker", "grid_chief", "community_staff")
STREET_DISPATCHER, DEPARTMENT_HANDLER, DISTRICT_ADMIN, AUDITOR = (
    "street_dispatcher", "department_handler", "district_admin", "auditor")

GRID_ROLES = (GRID_WORKER, GRID_CHIEF)  # 网格员、网格长: the people of a grid
# Who commands a street's cases (立案, 派遣, 结案, 审批): its dispatchers, and the district's
# administrators above them.
COMMAND_ROLES = (STREET_DISPATCHER, DISTRICT_ADMIN)
# Who hears of requests to a community's services (上门服务): its staff and the street's
# dispatchers.
SERVICE_PROVIDER_ROLES = (COMMUNITY_STAFF, STREET_DISPATCHER)
# Staff who file cases from the console or the office rather than the field.
OFFICE_ROLES = (COMMUNITY_STAFF, STREET_DISPATCHER, ADMIN, DISTRICT_ADMIN)
# Who an area's card lists (网格长, 网格员, 社区工作人员).
AREA_CARD_ROLES = (GRID_CHIEF, GRID_WORKER, COMMUNITY_STAFF)
# Where each role may hold an area membership (the area levels).
MEMBERSHIP_LEVELS: dict[str, tuple[str, ...]] = {
    GRID_WORKER: ("grid", "micro_grid"),
    GRID_CHIEF: ("grid", "community"),
    COMMUNITY_STAFF: ("community",),
    STREET_DISPATCHER: ("street",),
    DISTRICT_ADMIN: ("district", "city"),
    RESIDENT: ("community", "grid", "micro_grid"),
}
# Roles held as accounts only, never as an area membership.
ACCOUNT_ONLY_ROLES = (ADMIN, AUDITOR, DEPARTMENT_HANDLER)
# The channel a case comes in by, from the reporter's role (first match wins).
ROLE_CHANNELS = ((GRID_WORKER, "worker_app"), (GRID_CHIEF, "worker_app"),
                 (RESIDENT, "resident_app"))


class _HasRoles:  # what the predicates need of an actor (server.auth.actor.Actor)
    roles: frozenset[str]


def is_resident_only(actor: _HasRoles) -> bool:
    """Holds no role but 居民: their membership says where they live, not where they work."""
    return not (actor.roles - {RESIDENT})


def is_resident(actor: _HasRoles) -> bool:
    return RESIDENT in actor.roles


def works_a_grid(actor: _HasRoles) -> bool:
    """A grid worker or chief (网格员、网格长)."""
    return bool(actor.roles & set(GRID_ROLES))


def commands_streets(actor: _HasRoles) -> bool:
    """A street dispatcher (派遣员) or a district administrator."""
    return bool(actor.roles & set(COMMAND_ROLES))


def works_in_an_office(actor: _HasRoles) -> bool:
    """Community staff, a dispatcher, an administrator: reports from the console."""
    return bool(actor.roles & set(OFFICE_ROLES))


# --- feeds: break-the-glass (紧急授权) and declarations (自主申报) ---
# Told at once when a record of their grid is opened by break-the-glass (besides everyone
# holding grant:review, the auditors).
BREAK_GLASS_NOTIFIED_ROLES: tuple[str, ...] = (GRID_CHIEF,)


def roles_with(permission: str) -> tuple[str, ...]:
    """The roles that grant `permission` (whom to tell, without naming roles elsewhere)."""
    return tuple(r for r in ROLES if permission in ROLE_PERMISSIONS[r])
