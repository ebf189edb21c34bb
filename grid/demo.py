"""Deterministic demo data (fixed seed): accounts for every role, documented in the README.

Run once by `make run` (`flask seed-demo`); running it again changes nothing.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.auth import service as auth_service
from server.auth.models import User

DEMO_PASSWORD = "Demo-grid-2026"

# username, display name, phone, roles
DEMO_ACCOUNTS = [
    ("admin", "系统管理员", None, ["admin"]),
    ("district", "富阳区管理员", "13800000001", ["district_admin"]),
    ("auditor", "审计员", None, ["auditor"]),
    ("dispatcher", "街道派遣员", "13800000002", ["street_dispatcher"]),
    ("staff", "社区工作人员", "13800000003", ["community_staff"]),
    ("chief", "网格长", "13800000004", ["grid_chief"]),
    ("worker", "网格员", "13800000005", ["grid_worker"]),
    ("handler", "城管处置人员", "13800000006", ["department_handler"]),
    ("resident", "居民张三", "13900000001", ["resident"]),
]


def seed(s: Session, force: bool = False) -> str:
    if not force and s.scalar(sa.select(User.id).where(User.username == "admin")):
        return "demo data already present"
    for username, name, phone, roles in DEMO_ACCOUNTS:
        if s.scalar(sa.select(User.id).where(User.username == username)) is None:
            auth_service._new_user(s, username, name, phone, DEMO_PASSWORD, roles)
    return f"demo accounts created (password {DEMO_PASSWORD})"
