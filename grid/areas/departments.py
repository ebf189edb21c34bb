"""Departments (职能部门) and their members (department handlers, heads).

A department serves an area (service_area_id); it is managed by whoever manages that area,
and its members are placed by the membership rules of grid.areas.memberships.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.areas.memberships import member_user
from grid.areas.models import Department, DepartmentMember
from grid.areas.service import in_scope, manageable_area, visible_area_ids
from server import audit, db
from server.auth import permissions
from server.auth.actor import Actor
from server.auth.models import UserRole
from server.errors import Conflict, Invalid, NotFound, field_errors


def list_departments(s: Session, actor: Actor, page: Any) -> list[Department]:
    stmt = sa.select(Department).where(
        sa.or_(in_scope(Department.service_area_id, actor),
               Department.service_area_id.in_(visible_area_ids(actor)),
               Department.id.in_(actor.department_ids or [-1]))
    ).order_by(Department.code)
    return db.paginate(s, stmt, page)


def create_department(s: Session, actor: Actor, data: dict) -> Department:
    actor.require("area:manage")
    manageable_area(s, actor, data["service_area_id"])
    if s.scalar(sa.select(Department.id).where(Department.code == data["code"])):
        raise Conflict("Another department has this code")
    dept = Department(**data)
    s.add(dept)
    s.flush()
    audit.record(s, actor, "department_created", "department", dept.id, changes=data)
    return dept


def add_department_member(s: Session, actor: Actor, department_id: int, user_id: int,
                          is_head: bool) -> DepartmentMember:
    actor.require("membership:manage")
    dept = s.scalars(sa.select(Department).where(
        Department.id == department_id, in_scope(Department.service_area_id, actor))).first()
    if dept is None:
        raise NotFound("No such department")
    member_user(s, actor, user_id, permissions.DEPARTMENT_HANDLER)
    handler = UserRole.role == permissions.DEPARTMENT_HANDLER
    if s.scalar(sa.select(UserRole.role).where(UserRole.user_id == user_id, handler)) is None:
        raise Invalid(field_errors("user_id", "The user is not a department handler."))
    member = s.get(DepartmentMember, (department_id, user_id))
    if member is None:
        member = DepartmentMember(department_id=department_id, user_id=user_id)
        s.add(member)
    member.is_head = is_head
    s.flush()
    audit.record(s, actor, "department_member_set", "department", department_id,
                 changes={"user_id": user_id, "is_head": is_head})
    return member

