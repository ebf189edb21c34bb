"""Events out (事件推送): what happened, as CloudEvents 1.0 JSON envelopes, written to the
webhook outbox (`webhook_deliveries`) in the transaction of the change — a rolled-back
change sends nothing, a committed one is never lost. The worker delivers them
(grid/exchange/delivery.py).

Where events come from (hooks handed over in grid/exchange/wiring.py):
- a case's report, on its timeline (grid/cases/notices.py `_event`) → case.reported;
- the action engine's transition listeners (server/actions.py) → case.transitioned (with
  the action) for every case action, case.closed for 结案 too, and the 回单 of hotline
  tickets (grid/exchange/hotline_results.py);
- the register's change history (grid/registry/history.py `recorded`) → registry.record_changed;
- broadcasts (notifications/service.py) → broadcast.sent;
- warnings (grid/insights, built in parallel) → warning.raised through `warning_raised`.

Each subscription matching the event's type, area subtree and category gets one row; its
payload carries what the subscriber may see: personal data masked unless the subscription
was granted it (that grant, and each event sent with personal data, is audited).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from grid.areas.models import Area
from grid.cases.models import Case, CaseCategory
from grid.exchange.models import WebhookDelivery
from server import audit, clock, pii
from server.auth.actor import Actor

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"

# type → (中文 label, kind of API client that may subscribe to it)
EVENT_TYPES: dict[str, tuple[str, str]] = {
    "case.reported": ("事件上报", "system"),
    "case.transitioned": ("事件流转（含动作）", "system"),
    "case.closed": ("事件结案", "system"),
    "warning.raised": ("预警发布", "system"),
    "broadcast.sent": ("通知公告发布", "system"),
    "registry.record_changed": ("基础信息变更", "system"),
    # 回单 to the 12345 hotline, about its own tickets
    "hotline.accepted": ("受理", "hotline"),
    "hotline.rejected": ("不予受理（附理由）", "hotline"),
    "hotline.dispatched": ("已派遣（附部门）", "hotline"),
    "hotline.handled": ("已处置（附结果）", "hotline"),
    "hotline.closed": ("已办结", "hotline"),
    "hotline.evaluated": ("已评价", "hotline"),
}


@dataclass
class Event:
    """One event before it is addressed: `data` as masked; `clear` the same with personal
    data in clear (None when it has none)."""

    type: str
    source: str
    subject: str
    data: dict
    area_id: int | None = None
    category_ids: tuple[int, ...] = ()
    ordering_key: str | None = None
    clear: dict | None = None
    time: datetime = field(default_factory=clock.now)
    id: uuid.UUID = field(default_factory=uuid.uuid4)


def envelope(event: Event, data: dict) -> dict:
    """The CloudEvents 1.0 structured-mode JSON envelope (required attributes specversion,
    id, source, type; optional subject, time, datacontenttype; then data)."""
    return {"specversion": SPEC_VERSION, "id": str(event.id), "source": event.source,
            "type": event.type, "subject": event.subject,
            "time": event.time.isoformat(timespec="milliseconds"),
            "datacontenttype": CONTENT_TYPE, "data": data}


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def body_of(event: Event, data: dict) -> str:
    return json.dumps(envelope(event, data), ensure_ascii=False, separators=(",", ":"),
                      default=_json_default)


# Subscriptions an event reaches: active, of an active client of the right kind, of that
# type, whose area subtree holds the event's area (no area: every area) and whose
# categories (none: all) include the case's 小类 or its 大类 (events without one pass);
# with the event's area code and name, which payloads show (no other query for them).
_MATCH = sa.text("""
SELECT s.id, s.personal_data, ea.code AS area_code, ea.name AS area_name
FROM webhook_subscriptions s
JOIN api_clients c ON c.id = s.client_id AND c.active AND c.kind = :kind
LEFT JOIN areas ea ON ea.id = :area_id
LEFT JOIN areas sa ON sa.id = s.area_id
WHERE s.active AND :type = ANY(s.event_types)
  AND (s.area_id IS NULL OR ea.path LIKE sa.path || '%')  -- paths end with '.'
  AND (cardinality(s.category_ids) = 0 OR cardinality(CAST(:categories AS bigint[])) = 0
       OR EXISTS (SELECT 1 FROM case_categories cc
                  WHERE cc.id = ANY(CAST(:categories AS bigint[]))
                    AND (cc.id = ANY(s.category_ids) OR cc.parent_id = ANY(s.category_ids))))
ORDER BY s.id
""")

_SYSTEM = Actor(user_id=None)


def _subscribers(s: Session, kind: str, type_: str, area_id: int | None,
                 categories: tuple[int, ...]) -> list[Any]:
    return s.execute(_MATCH, {"kind": kind, "type": type_, "area_id": area_id,
                              "categories": list(categories)}).all()


def enqueue(s: Session, event: Event, kind: str = "system") -> int:
    """Write one outbox row per matching subscription (in the caller's transaction);
    returns how many."""
    return _write(s, event, _subscribers(s, kind, event.type, event.area_id,
                                         event.category_ids))


def _write(s: Session, event: Event, found: list[Any]) -> int:
    if not found:
        return 0
    masked = body_of(event, event.data)
    clear = body_of(event, event.clear) if event.clear is not None else masked
    rows = [{"subscription_id": sub.id, "event_id": event.id, "event_type": event.type,
             "subject": event.subject[:120], "ordering_key": event.ordering_key,
             "body": clear if sub.personal_data else masked} for sub in found]
    s.execute(sa.insert(WebhookDelivery), rows)
    for sub in found:
        if sub.personal_data and event.clear is not None:
            audit.record(s, _SYSTEM, "webhook_personal_data_sent", "webhook_subscription",
                         sub.id, changes={"event_id": str(event.id), "type": event.type,
                                          "subject": event.subject})
    return len(found)


def lazy_enqueue(s: Session, build: Any, type_: str, area_id: int | None,
                 categories: tuple[int, ...] = (), kind: str = "system") -> int:
    """Enqueue only if some subscription wants it: `build(place)` runs after the match, so
    that a change nobody subscribed to costs one query; `place` is the event's area
    ({id, code, name}, None without one)."""
    found = _subscribers(s, kind, type_, area_id, categories)
    if not found:
        return 0
    place = None if area_id is None else {"id": area_id, "code": found[0].area_code,
                                          "name": found[0].area_name}
    return _write(s, build(place), found)


# --- cases ---------------------------------------------------------------------------------


def _mask_name(name: str | None) -> str | None:
    return None if not name else name[0] + "*" * max(1, len(name) - 1)


def case_data(s: Session, case: Case, place: dict | None = None
              ) -> tuple[dict, dict | None]:
    """The case as a subscriber sees it: masked, and in clear (None if the same).
    Never the reporting resident's account; a caller's contact only for tickets and other
    systems' reports, masked unless granted."""
    # by primary key: no query when the action loaded it already (the clock reads it)
    category = s.get(CaseCategory, case.category_id)
    if place is None:
        row = s.execute(sa.select(Area.code, Area.name).where(Area.id == case.area_id)).one()
        place = {"id": case.area_id, "code": row.code, "name": row.name}
    point = case.point
    data = {"id": case.id, "code": case.code, "state": case.state, "channel": case.channel,
            "category": {"id": case.category_id, "code": category.code, "name": category.name},
            "area": place,
            "address": case.address, "description": case.description,
            "location": {"lon": point[0], "lat": point[1]} if point else None,
            "priority": case.priority, "department_id": case.department_id,
            "reported_at": case.reported_at, "due_at": case.due_at,
            "closed_at": case.closed_at, "result": case.result, "rating": case.rating,
            "external_ref": case.external_ref, "version": case.version}
    clear = dict(data)
    if case.contact_name or case.contact_phone_masked:
        data["contact"] = {"name": _mask_name(case.contact_name),
                           "phone": case.contact_phone_masked}
        clear["contact"] = {"name": case.contact_name,
                            "phone": pii.decrypt(case.contact_phone_enc, "case.contact_phone")}
    return data, clear if "contact" in clear else None


def _case_event(s: Session, case: Case, type_: str, extra: dict,
                place: dict | None = None) -> Event:
    data, clear = case_data(s, case, place)
    return Event(type=type_, source="/cases", subject=f"cases/{case.id}",
                 data={"case": data, **extra},
                 clear={"case": clear, **extra} if clear is not None else None,
                 area_id=case.area_id, category_ids=(case.category_id,),
                 ordering_key=f"case:{case.id}")


def on_case_timeline(s: Session, case: Case, action: str, from_state: str | None,
                     note: str | None, data: dict) -> None:
    """A case's timeline got an entry (the hook of grid/cases/notices.py): a report is
    case.reported (transitions come through the action engine's listeners)."""
    if action == "report":
        lazy_enqueue(s, lambda p: _case_event(s, case, "case.reported", {}, p), "case.reported",
                     case.area_id, (case.category_id,))


def state_before(record: Any, transition: Any) -> str | None:
    """The state a transition left: the unflushed change of `state`, else the only state it
    can leave (the engine's listeners get the record after the change)."""
    if transition.target is None:
        return record.state
    deleted = sa.inspect(record).attrs.state.history.deleted
    if deleted:
        return deleted[0]
    return transition.sources[0] if len(transition.sources) == 1 else None


def on_transition(s: Session, kind: str, record: Any, transition: Any, actor: Actor,
                  result: Any) -> None:
    """A life-cycle action succeeded (server/actions.py listener): a case's is
    case.transitioned (with the action), and 结案 is case.closed too."""
    if kind != "case":
        return
    extra = {"action": transition.action, "action_label": transition.label,
             "from_state": state_before(record, transition), "to_state": record.state,
             "note": result.note}
    types = ("case.transitioned", "case.closed") if transition.action == "close" else (
        "case.transitioned",)
    for type_ in types:
        lazy_enqueue(s, lambda p, t=type_: _case_event(s, record, t, extra, p), type_,
                     record.area_id, (record.category_id,))


# --- registry, broadcasts, warnings ----------------------------------------------------------


def on_registry_change(s: Session, kind: str, record: Any, action: str, diff: dict) -> None:
    """A register record was created or changed (grid/registry/history.py `recorded`): its
    kind, id, grid and the names of the fields that changed; their values (personal data
    already hidden by the history) only for subscriptions granted personal data."""
    area_id = getattr(record, "area_id", None)

    def build(place: dict | None) -> Event:
        base = {"record": {"kind": kind, "id": record.id, "area": place},
                "action": action, "fields": sorted(diff)}
        return Event(type="registry.record_changed", source=f"/registry/{kind}s",
                     subject=f"{kind}s/{record.id}", data=base,
                     clear={**base, "changes": diff}, area_id=area_id,
                     ordering_key=f"{kind}:{record.id}")

    lazy_enqueue(s, build, "registry.record_changed", area_id)


def on_broadcast(s: Session, broadcast: Any) -> None:
    """A broadcast (通知公告/预警) was sent (notifications/service.py's hook)."""
    def build(place: dict | None) -> Event:
        return Event(type="broadcast.sent", source="/broadcasts",
                     subject=f"broadcasts/{broadcast.id}",
                     data={"broadcast": {"id": broadcast.id, "level": broadcast.level,
                                         "title": broadcast.title, "text": broadcast.text,
                                         "link": broadcast.link,
                                         "area": place}},
                     area_id=broadcast.area_id)

    lazy_enqueue(s, build, "broadcast.sent", broadcast.area_id)


def warning_raised(s: Session, warning_id: int, area_id: int | None, data: dict) -> int:
    """For grid/insights: a warning (预警) was raised. `data` is the warning as a subscriber
    may see it (aggregates, no personal data)."""
    return lazy_enqueue(s, lambda place: Event(
        type="warning.raised", source="/warnings", subject=f"warnings/{warning_id}",
        data={"warning": {"id": warning_id, "area": place, **data}}, area_id=area_id,
        ordering_key=f"warning:{warning_id}"), "warning.raised", area_id)
