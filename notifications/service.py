"""`notify()`: what other modules call to tell people something.

Templates are registered by the module that owns the kind (grid.cases registers the case
kinds), so that each message's words live beside the rule that sends it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from notifications.models import Notification, OutboxMessage


@dataclass(frozen=True)
class Template:
    """The words of one kind of notification: {locale: (title, body)} with str.format
    placeholders filled from the notification's data. `urgent` pushes ignore quiet hours."""

    texts: dict[str, tuple[str, str]]
    urgent: bool = False


TEMPLATES: dict[str, Template] = {}
DEFAULT_LOCALE = "zh-CN"


def register_template(kind: str, zh: tuple[str, str], en: tuple[str, str], *,
                      urgent: bool = False) -> None:
    TEMPLATES[kind] = Template({"zh-CN": zh, "en": en}, urgent=urgent)


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


def render(kind: str, data: dict, locale: str | None = None) -> tuple[str, str]:
    """(title, body) of a notification in a locale (zh-CN when the locale is unknown)."""
    template = TEMPLATES.get(kind)
    if template is None:
        return kind, ""
    lang = locale if locale in template.texts else (
        "en" if locale and locale.startswith("en") else DEFAULT_LOCALE)
    title, body = template.texts[lang]
    values = _Blank({k: ("" if v is None else v) for k, v in data.items()})
    return title.format_map(values), body.format_map(values)


def notify(s: Session, recipients: Iterable[int | None], kind: str, data: dict, *,
           urgent: bool | None = None, collapse_key: str | None = None) -> list[int]:
    """Tell each recipient (user ids; None and repeats are skipped) about something: an
    inbox row and an outbox row each, in the caller's transaction. Returns the inbox ids."""
    users = sorted({r for r in recipients if r is not None})
    if not users:
        return []
    if urgent is None:
        urgent = kind in TEMPLATES and TEMPLATES[kind].urgent
    ids = list(s.scalars(
        sa.insert(Notification).returning(Notification.id, sort_by_parameter_order=True),
        [{"user_id": u, "kind": kind, "data": data, "urgent": urgent,
          "collapse_key": collapse_key} for u in users],
    ))
    s.execute(sa.insert(OutboxMessage),
              [{"notification_id": i, "user_id": u} for i, u in zip(ids, users, strict=True)])
    return ids
