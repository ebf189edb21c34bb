"""Push (推送): a batch of operations from a phone (creates, updates, ends), each applied
in its own savepoint with its own result (issue 4, "Offline sync for phones").

See `push`. The (type, op) → service function table is `OPERATIONS`; the type → model and
masked schema table is grid.sync.record_types.TYPES.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import marshmallow as ma
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.http import HTTP_STATUS_CODES

from geo.fields import GpsFix
from grid.registry import schemas as rs
from grid.registry.models import Organisation, Person
from grid.registry.people import create_person, end_person, update_person
from grid.registry.records import (
    create_building,
    create_house,
    create_household,
    create_organisation,
    end_record,
    update_building,
    update_house,
    update_household,
    update_organisation,
)
from grid.registry.scope import ID_FIELD, PHONE_FIELD, scoped
from grid.registry.validation import normalize_id_number, normalize_uscc
from grid.sync.record_types import TYPES, _dump_one
from grid.sync.schemas import BATCH_MAX, PushItemSchema
from server import idempotency, pii
from server.api import error_payload
from server.auth.actor import Actor
from server.errors import (
    Conflict,
    DomainError,
    Invalid,
    PreconditionFailed,
    field_errors,
)


@dataclass
class Item:
    """One operation of a batch, its envelope validated and its data loaded."""

    index: int
    op: str
    type: str
    data: dict
    id: int | None = None
    version: int | None = None
    client_uuid: uuid.UUID | None = None


@dataclass(frozen=True)
class Operation:
    """How one (type, op) is applied: the schema its data loads with (the one the
    single-record endpoint uses) and the registry function that applies it."""

    schema: type[ma.Schema]
    apply: Callable[[Session, Actor, Item], Any]
    status: int = 200


def _create(schema: type[ma.Schema], create: Callable) -> Operation:
    """A create answers 201, or 200 for a replay of its client_uuid (server.idempotency)."""
    return Operation(schema, lambda s, a, it: create(s, a, it.data, it.client_uuid), 201)


def _update(schema: type[ma.Schema], update: Callable) -> Operation:
    return Operation(schema, lambda s, a, it: update(s, a, it.id, it.data, it.version))


def _end(kind: str) -> Operation:
    return Operation(rs.EndSchema, lambda s, a, it: end_record(
        s, a, kind, it.id, it.data["reason"], it.version))


OPERATIONS: dict[tuple[str, str], Operation] = {
    ("building", "create"): _create(rs.BuildingCreateSchema, create_building),
    ("building", "update"): _update(rs.BuildingWriteSchema, update_building),
    ("building", "end"): _end("building"),
    ("house", "create"): _create(rs.HouseCreateSchema, create_house),
    ("house", "update"): _update(rs.HouseWriteSchema, update_house),
    ("house", "end"): _end("house"),
    ("household", "create"): _create(rs.HouseholdCreateSchema, create_household),
    ("household", "update"): _update(rs.HouseholdWriteSchema, update_household),
    ("household", "end"): _end("household"),
    ("organisation", "create"): _create(rs.OrganisationCreateSchema,
                                        create_organisation),
    ("organisation", "update"): _update(rs.OrganisationWriteSchema,
                                        update_organisation),
    ("organisation", "end"): _end("organisation"),
    ("person", "create"): _create(rs.PersonCreateSchema, create_person),
    ("person", "update"): _update(rs.PersonWriteSchema, update_person),
    ("person", "end"): Operation(rs.PersonEndSchema, lambda s, a, it: end_person(
        s, a, it.id, it.data["status"], it.data.get("reason"), it.version)),
}


def _at(index: int, errors: dict, under: str | None = None) -> dict:
    """Field errors of item `index`, named as in the batch: {"json": {"items": {"3":
    {"data": {"name": [...]}}}}}."""
    inner = {under: errors} if under else errors
    return {"json": {"items": {str(index): inner}}}


def _load(index: int, raw: dict) -> Item:
    """Validate an item's envelope and load its data with the single-record schema."""
    try:
        envelope = PushItemSchema().load(raw)
    except ma.ValidationError as exc:
        raise Invalid(_at(index, exc.normalized_messages()),
                      message=f"Item {index} is not a valid operation") from None
    operation = OPERATIONS.get((envelope["type"], envelope["op"]))
    if operation is None:
        raise Invalid(_at(index, {"type": [f"{envelope['type']} records cannot be "
                                           f"{envelope['op']}d by sync yet."]}),
                      message=f"Item {index}: not supported")
    try:
        data = operation.schema().load(envelope["data"])
    except ma.ValidationError as exc:
        raise Invalid(_at(index, exc.normalized_messages(), "data"),
                      message=f"Item {index} has invalid data") from None
    # The single-record schemas also accept these in the body; the envelope's come first.
    client_uuid = data.pop("client_uuid", None)
    version = data.pop("version", None)
    return Item(index, envelope["op"], envelope["type"], data, envelope.get("id"),
                envelope.get("version", version), envelope.get("client_uuid", client_uuid))


def _error(index: int, exc: DomainError) -> dict:
    """A domain error as an item's result, its field errors named under the item."""
    errors = exc.errors
    if isinstance(errors, dict) and set(errors) == {"json"} and "items" not in errors["json"]:
        errors = _at(index, errors["json"], "data")
    return {"index": index, "status": exc.status,
            "error": error_payload(exc.status, HTTP_STATUS_CODES.get(exc.status, "Error"),
                                   exc.message, errors, **exc.extra)}


def _same_value(record: Any, name: str, value: Any) -> bool:
    """Whether the record already holds what an update sets (personal data compared
    through its blind index or in clear, never through the mask: masks collide)."""
    if name == "location":
        return isinstance(value, GpsFix) and (
            record.gps_crs, record.gps_raw_lon, record.gps_raw_lat, record.gps_accuracy_m,
            record.gps_captured_at, record.gps_device_id) == (
            value.crs, value.raw_lon, value.raw_lat, value.accuracy_m, value.captured_at,
            value.device_id)
    if isinstance(record, Person) and name == "id_number":
        number = normalize_id_number(value) if value is not None else None
        return pii.blind_index(number, ID_FIELD) == record.id_number_bidx
    if isinstance(record, Person) and name == "phone":
        return pii.blind_index(value, PHONE_FIELD) == record.phone_bidx
    if isinstance(record, Organisation) and name == "uscc":
        return (normalize_uscc(value) if value is not None else None) == record.uscc
    if isinstance(record, Organisation) and name == "risk_flags":
        return set(value or []) == set(record.risk_flags or [])
    if hasattr(record, f"{name}_enc"):
        return pii.decrypt(getattr(record, f"{name}_enc"),
                           f"{record.__tablename__}.phone") == value
    return getattr(record, name, object()) == value


def _already_applied(s: Session, actor: Actor, item: Item) -> Any | None:
    """A stale update or end that the record already reflects (the phone resent a batch
    whose first attempt was applied but whose answer it never got): the record, else None.
    """
    record = s.scalars(scoped(TYPES[item.type].model, actor)
                       .where(TYPES[item.type].model.id == item.id)).first()
    if record is None:
        return None
    if item.op == "end":
        done = record.ended_at is not None and (
            not isinstance(record, Person) or record.status == item.data["status"])
    elif item.op == "update":
        done = all(_same_value(record, k, v) for k, v in item.data.items())
    else:
        done = False
    return record if done else None


def _apply(s: Session, actor: Actor, index: int, raw: dict) -> dict:
    item = _load(index, raw)
    operation = OPERATIONS[item.type, item.op]
    try:
        with s.begin_nested():
            record, status = operation.apply(s, actor, item), operation.status
            if isinstance(record, tuple):  # a create: (record, created)
                record, created = record
                status = idempotency.create_answer(created)[0]
            s.flush()
            body = _dump_one(s, actor, item.type, record)
        return {"index": index, "status": status, "body": body}
    except (PreconditionFailed, StaleDataError):
        record = _already_applied(s, actor, item)
        if record is not None:
            return {"index": index, "status": 200, "body": _dump_one(s, actor, item.type, record)}
        # stale (or a concurrent writer passed the version check too): the item's 412
        # carries the record as a pull shows it
        raise PreconditionFailed("This record changed since you read it",
                                 current=_current(s, actor, item)) from None
    except DataError as exc:
        # A value the schemas let through but the column cannot hold: this item's 422, so
        # that one bad item cannot make the phone resend its whole queue for ever.
        raise Invalid(_at(index, {"_schema": ["The database cannot store a value of this "
                                              "item."]}, "data")) from exc
    except IntegrityError as exc:
        # The registry turns the unique rules it knows into 409s; any other clash with a
        # concurrent writer is still this item's conflict, not the batch's failure.
        raise Conflict("This conflicts with a record written at the same time; "
                       "pull and try again") from exc


def _current(s: Session, actor: Actor, item: Item) -> dict | None:
    spec = TYPES[item.type]
    record = s.scalars(scoped(spec.model, actor).where(spec.model.id == item.id)
                       ).first()
    return None if record is None else _dump_one(s, actor, item.type, record)


def push(s: Session, actor: Actor, items: list[dict]) -> list[dict]:
    """Apply a batch (at most BATCH_MAX operations) in order, each in a savepoint of its
    own: a failed item leaves nothing behind and does not stop the others; the caller
    commits the good ones. Each item gets {index, status, body | error}.

    A retried batch is harmless: a create is a replay of its client_uuid (the original
    record, 200); an update or end whose version is stale because its first attempt was
    applied, and whose fields the record already holds, answers 200 with the record; a
    stale one that the record does not reflect answers 412 with the current record.
    """
    actor.require("registry:write")
    if len(items) > BATCH_MAX:
        raise Invalid(field_errors("items", f"At most {BATCH_MAX} operations per batch."))
    results = []
    for index, raw in enumerate(items):
        try:
            results.append(_apply(s, actor, index, raw))
        except DomainError as exc:
            results.append(_error(index, exc))
    return results
