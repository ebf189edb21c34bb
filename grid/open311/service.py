"""GeoReport v2 over the case module: services are the active 小类, service requests are
cases, and a POST goes through the same intake as the 12345 hotline
(`grid.cases.intake.report_from_system`): an active 小类, its extra questions checked, the grid of
the point, likely duplicates, the street's dispatchers told, the audit row.

What is published is `grid.cases.scope.published()`: requests of Open311 apps and grid workers'
reports, and residents' reports that they chose to make public (公开); never hotline
tickets, nor disputes (矛盾纠纷, 06xx) and mass incidents (群发性事件, 0406), which can be
reported but are never listed nor fetched. Of those only public fields leave: never the
reporter, the contact, the device, photos or ids of users.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from typing import Any

import marshmallow as ma
import sqlalchemy as sa
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from geo.fields import GpsFix
from grid.areas.models import Department
from grid.cases.categories import list_categories
from grid.cases.intake import report_from_system
from grid.cases.models import (
    OPEN_STATES,
    STATES,
    Case,
    CaseCategory,
    CaseEvent,
    CaseRequest,
)
from grid.cases.scope import published
from grid.open311.schemas import PostRequestSchema, RequestQuerySchema
from server import apiclients, ratelimit
from server.apiclients import ApiClient
from server.auth.actor import Actor
from server.clock import local_zone, now
from server.errors import (
    DomainError,
    Forbidden,
    Invalid,
    NotFound,
    Unauthorized,
    field_errors,
)
from server.validators import MOBILE_RE

SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
MAX_DAYS = 90  # the spec's default window of GET requests
MAX_IDS = 1000


class BadKey(Unauthorized):
    """A missing or wrong api_key: the attempt is counted against the caller's address
    (kept although the request fails), so that guessing keys runs into the rate limit."""

    keep_changes = True


def caller(s: Session, api_key: str | None, ip: str | None, request_id: str | None, *,
           required: bool, per_ip_per_minute: int) -> tuple[ApiClient | None, Actor | None]:
    """The client app of an api_key (rate-limited per key), or (None, None) for an
    anonymous reader (rate-limited per address)."""
    if api_key:
        try:
            return apiclients.by_api_key(s, api_key, "open311", ip, request_id)
        except (Unauthorized, Forbidden) as exc:  # Forbidden: a key of another kind
            _count_address(s, ip, per_ip_per_minute)
            raise BadKey(f"api_key: {exc.message}") from None
    _count_address(s, ip, per_ip_per_minute)
    if required:
        raise BadKey("api_key is required to post requests (ask the administrators for one)")
    return None, None


def _count_address(s: Session, ip: str | None, per_minute: int) -> None:
    ratelimit.hit(s, f"open311:ip:{ip or '-'}", per_minute, 60,
                  "Too many requests from this address")


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else \
        moment.astimezone(local_zone()).isoformat(timespec="seconds")


# --- discovery and services ---------------------------------------------------------------


def discovery(s: Session, base_url: str, contact: str, key_service: str) -> dict:
    """The Service Discovery document; its changeset moves when a category changes."""
    changeset = _time(s.scalar(sa.select(sa.func.max(CaseCategory.updated_at))))
    return {"changeset": changeset, "contact": contact, "key_service": key_service,
            "endpoints": [{"specification": SPECIFICATION,
                           "url": base_url.rstrip("/") + "/open311/v2",
                           "changeset": changeset, "type": "production",
                           "formats": ["text/xml", "application/json"]}]}


def _services(s: Session) -> tuple[list[CaseCategory], dict[int, CaseCategory]]:
    everything = list_categories(s, include_inactive=True)
    groups = {c.id: c for c in everything if c.parent_id is None}
    leaves = [c for c in everything if c.parent_id is not None and c.active
              and groups[c.parent_id].active]
    return leaves, groups


def services(s: Session) -> list[dict]:
    """Every active 小类 as a realtime service, grouped by its 大类."""
    leaves, groups = _services(s)
    return [{"service_code": c.code, "service_name": c.name,
             "description": c.description or c.name_en or c.name,
             "metadata": bool(c.attributes), "type": "realtime",
             "keywords": ", ".join(k for k in (groups[c.parent_id].name, c.name_en) if k),
             "group": groups[c.parent_id].name} for c in leaves]


def _service(s: Session, code: str) -> CaseCategory:
    leaves, _ = _services(s)
    found = next((c for c in leaves if c.code == code), None)
    if found is None:
        raise NotFound(f"service_code {code!r}: no such service")
    return found


def service_definition(s: Session, code: str) -> dict:
    """A service's extra questions as GeoReport attributes."""
    category = _service(s, code)
    attributes = sorted(category.attributes, key=lambda a: (a.get("order", 0), a["code"]))
    return {"service_code": category.code, "attributes": [
        {"variable": True, "code": a["code"], "datatype": a["datatype"],
         "required": bool(a.get("required")), "datatype_description": None,
         "order": a.get("order", 0), "description": a.get("description") or a["code"],
         "values": [{"key": v["key"], "name": v["name"]} for v in a.get("values", [])]}
        for a in attributes]}


# --- POST requests ------------------------------------------------------------------------


def _load(schema: ma.Schema, fields: dict) -> dict:
    try:
        return schema.load(fields)
    except ma.ValidationError as exc:
        raise Invalid({"form": exc.messages}) from None


def _number(value: Any) -> Any:
    """A form's text as a number when it is one (else as sent: the check says why)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    if not math.isfinite(number):
        return value
    return int(number) if number.is_integer() and abs(number) < 1e15 else number


def typed_attributes(category: CaseCategory, raw: dict[str, list]) -> dict:
    """attribute[code] values (always lists from a form) in the type each question has;
    `grid.cases.categories.check_attributes` then checks them."""
    kinds = {a["code"]: a.get("datatype") for a in category.attributes}
    values: dict[str, Any] = {}
    for code, items in raw.items():
        kind = kinds.get(code)
        if kind == "multivaluelist":
            values[code] = [str(v) for v in items]
            continue
        value = items[0] if len(items) == 1 else items
        if kind == "number":
            value = _number(value)
        elif kind is not None and not isinstance(value, (list, str)):
            value = str(value)
        values[code] = value
    return values


def _phone(raw: str | None) -> str | None:
    """A mainland mobile number, spaces, dashes and a +86 prefix allowed."""
    if raw is None:
        return None
    phone = re.sub(r"^\+?86(?=1\d{10}$)", "", re.sub(r"[\s\-()]", "", raw))
    if not MOBILE_RE.match(phone):
        raise Invalid(field_errors("phone", "A mainland mobile number (11 digits, 13x–19x).",
                                   location="form"))
    return phone


def _name(first: str | None, last: str | None) -> str | None:
    """姓在前 for Chinese names (李 + 先生), "first last" otherwise."""
    if not (first or last):
        return None
    if all(re.fullmatch(r"[\u4e00-\u9fff·]*", n or "") for n in (first, last)):
        return ((last or "") + (first or ""))[:64]
    return " ".join(n for n in (first, last) if n)[:64]  # the column holds 64


def post_request(s: Session, client: ApiClient, actor: Actor, fields: dict,
                 attributes: dict[str, list]) -> tuple[list[dict], bool]:
    """A new service request → a case of channel "open311" (realtime: its id at once).

    `client_request_id` (ours, optional) makes retries safe: the same id from the same
    client with the same content answers the original request, with other content 409.
    The contact (names, phone) is kept like a hotline caller's (phone encrypted, masked
    copy); the email is not kept: we have no use for it. Returns the spec's answer and
    whether a case was created.
    """
    data = _load(PostRequestSchema(), fields)
    category = _service(s, data["service_code"])  # the spec's 404 for any other code
    location = None
    if "lat" in data:
        location = GpsFix(lon=data["long"], lat=data["lat"], raw_lon=data["long"],
                          raw_lat=data["lat"], device_id=data.get("device_id"))
    elif not data.get("grid_code"):
        raise Invalid(field_errors(
            "lat", "lat and long are required: every request goes to the grid its point "
            "falls in, and an address alone cannot be placed (or send grid_code).",
            location="form"))
    ref = data.get("client_request_id")
    payload = {"category_code": category.code,
               "description": data.get("description") or category.name,
               "location": location, "grid_code": data.get("grid_code"),
               "address": data.get("address_string"),
               "attributes": typed_attributes(category, attributes),
               "contact_name": _name(data.get("first_name"), data.get("last_name")),
               "contact_phone": _phone(data.get("phone")), "media_url": data.get("media_url")}
    case, duplicates, created = report_from_system(
        s, actor, {k: v for k, v in payload.items() if v is not None}, "open311",
        f"{client.key_id}:{ref}" if ref else None, category_field="service_code",
        event_data={"api_client_id": client.id, "client_request_id": ref,
                    "media_url": data.get("media_url")},
        audit_data={"api_client_id": client.id})
    if not created:
        notice = f"已登记（{case.code}），此为同一 client_request_id 的重复提交。"
    else:
        notice = f"已登记（{case.code}），将由所在街道受理。"
        if duplicates:
            notice += f"附近已有 {len(duplicates)} 件同类问题在办。"
    return [{"service_request_id": case.code, "service_notice": notice,
             "account_id": None}], created


# --- GET requests -------------------------------------------------------------------------


def _split(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def find_requests(s: Session, query: dict) -> list[dict]:
    """GET requests: by service_request_id (a comma list; the other filters are then
    ignored, as the spec says), else reported in [start_date, end_date] (the last 90 days
    by default, 90 days at most) of service_code(s) and status, newest first, one page
    (page, page_size ≤ 1000: the common extension)."""
    q = _load(RequestQuerySchema(), query)
    stmt = sa.select(Case).where(published())
    if q.get("service_request_id"):
        ids = _split(q["service_request_id"])
        if len(ids) > MAX_IDS:
            raise Invalid(field_errors("service_request_id", f"At most {MAX_IDS} ids.",
                                       location="query"))
        stmt = stmt.where(Case.code.in_(ids))
    else:
        stmt = stmt.where(*_window(q))
        if q.get("service_code"):
            codes = sa.select(CaseCategory.id).where(
                CaseCategory.code.in_(_split(q["service_code"])))
            stmt = stmt.where(Case.category_id.in_(codes))
        statuses = set(_split(q.get("status") or ""))
        if statuses == {"open"}:
            stmt = stmt.where(Case.state.in_(OPEN_STATES))
        elif statuses == {"closed"}:
            stmt = stmt.where(Case.state.not_in(OPEN_STATES))
    stmt = stmt.order_by(Case.reported_at.desc(), Case.id.desc()) \
        .limit(q["page_size"]).offset((q["page"] - 1) * q["page_size"])
    return _present(s, list(s.scalars(stmt)))


def _window(q: dict) -> list[sa.ColumnElement[bool]]:
    span = timedelta(days=MAX_DAYS)
    start, end = q.get("start_date"), q.get("end_date")
    if end is None:
        end = min(now(), start + span) if start is not None else now()
    if start is None:
        start = end - span
    if start > end:
        raise Invalid(field_errors("start_date", "Must be before end_date.", location="query"))
    if end - start > span:
        raise Invalid(field_errors("end_date", f"At most {MAX_DAYS} days after start_date.",
                                   location="query"))
    return [Case.reported_at >= start, Case.reported_at <= end]


def get_request(s: Session, service_request_id: str) -> list[dict]:
    """One request (a list of one, as the spec answers); 404 if unknown or private."""
    case = s.scalars(sa.select(Case).where(Case.code == service_request_id,
                                           published())).first()
    if case is None:
        raise NotFound(f"service_request_id {service_request_id!r}: no such request")
    return _present(s, [case])


def _status_notes(s: Session, page: list[Case]) -> dict[int, str]:
    """Why a request is where it is: 不予立案 with its reason, merged into which request,
    作废 with the reason approved, 结案 with the result; the state's name otherwise."""
    ids = {c.id for c in page}
    last_reject = sa.select(sa.func.max(CaseEvent.id)).where(
        CaseEvent.case_id.in_(ids), CaseEvent.action == "reject").group_by(CaseEvent.case_id)
    rejected = dict(s.execute(sa.select(CaseEvent.case_id, CaseEvent.note)
                              .where(CaseEvent.id.in_(last_reject))).all())
    last_void = sa.select(sa.func.max(CaseRequest.id)).where(
        CaseRequest.case_id.in_(ids), CaseRequest.kind == "void",
        CaseRequest.state == "approved").group_by(CaseRequest.case_id)
    voided = dict(s.execute(sa.select(CaseRequest.case_id, CaseRequest.reason)
                            .where(CaseRequest.id.in_(last_void))).all())
    kept = dict(s.execute(sa.select(Case.id, Case.code).where(
        Case.id.in_({c.merged_into_id for c in page if c.merged_into_id})).where(published())
    ).all())
    notes = {}
    for case in page:
        if case.state == "rejected":
            note = f"不予立案：{rejected.get(case.id) or ''}".rstrip("：")
        elif case.state == "merged":
            note = f"已合并至 {kept[case.merged_into_id]}" \
                if case.merged_into_id in kept else "已合并"
        elif case.state == "voided":
            note = f"已作废：{voided.get(case.id) or ''}".rstrip("：")
        elif case.state in ("closed", "evaluated"):
            note = f"已结案：{case.result}" if case.result else "已结案"
        else:
            note = STATES[case.state]
        notes[case.id] = note
    return notes


def _present(s: Session, page: list[Case]) -> list[dict]:
    """The public fields of each case, and nothing else."""
    if not page:
        return []
    categories = {c.id: c for c in s.scalars(sa.select(CaseCategory).where(
        CaseCategory.id.in_({c.category_id for c in page})))}
    departments = dict(s.execute(sa.select(Department.id, Department.name).where(
        Department.id.in_({c.department_id for c in page if c.department_id}))).all())
    notes = _status_notes(s, page)
    answer = []
    for case in page:
        category, point = categories[case.category_id], case.point
        is_open = case.state in OPEN_STATES
        answer.append({
            "service_request_id": case.code,
            "status": "open" if is_open else "closed",
            "status_notes": notes[case.id],
            "service_name": category.name,
            "service_code": category.code,
            "description": case.description,
            "agency_responsible": departments.get(case.department_id),
            "service_notice": None,
            "requested_datetime": _time(case.reported_at),
            # Never before the request (a clock that lagged must not show it in the past).
            "updated_datetime": _time(max(case.updated_at, case.reported_at)),
            "expected_datetime": _time(case.due_at) if is_open else None,
            "address": case.address,
            "address_id": None,
            "zipcode": None,
            "lat": point[1] if point else None,
            "long": point[0] if point else None,
            "media_url": None,  # photos may show people: never published
        })
    return answer


# --- errors -------------------------------------------------------------------------------

# Our names of inputs → the names the client sent.
_NAMES = {"location": "lat/long", "category_code": "service_code"}
_LOCATIONS = ("json", "form", "query", "path", "headers", "files")


def _flatten(errors: Any, path: tuple = ()) -> list[tuple[tuple, str]]:
    if isinstance(errors, dict):
        return [item for key, value in errors.items()
                for item in _flatten(value, path + (str(key),))]
    if isinstance(errors, list) and all(isinstance(e, str) for e in errors):
        return [(path, message) for message in errors]
    if isinstance(errors, list):
        return [item for i, value in enumerate(errors)
                for item in _flatten(value, path + (str(i),))]
    return [(path, str(errors))]


def _input_name(path: tuple) -> str:
    if path and path[0] in _LOCATIONS:
        path = path[1:]
    if len(path) >= 2 and path[0] == "attributes":
        return f"attribute[{path[1]}]"
    return ".".join(_NAMES.get(p, p) for p in path) or "request"


def error_entries(exc: BaseException) -> tuple[int, list[tuple[int, str]], dict]:
    """(status, [(code, description)], headers) of a failure, as GeoReport errors: a bad
    or missing api_key is a 403 (the spec's code), invalid input a 400 naming each input
    (attribute[code] for the extra questions), 429 keeps its Retry-After."""
    if isinstance(exc, DomainError):
        status = {401: 403, 422: 400}.get(exc.status, exc.status)
        entries = [(status, f"{_input_name(path)}: {message}")
                   for path, message in _flatten(exc.errors or {})]
        headers = {k: v for k, v in exc.headers.items() if k == "Retry-After"}
        return status, entries or [(status, exc.message)], headers
    if isinstance(exc, HTTPException):
        code = exc.code or 500
        return code, [(code, exc.description or exc.name)], {}
    return 500, [(500, "Internal server error")], {}
