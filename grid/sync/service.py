"""Offline sync for phones (issue 4, "Offline sync for phones").

Pull: everything that changed in the actor's grids since a cursor
------------------------------------------------------------------
Every register row carries `change_seq` (the order of writes) and `change_xid` (the xid8 of
the transaction that wrote it), stamped on insert and update; a record that leaves a grid
leaves a tombstone there with the same two stamps.

Ordering by change_seq alone would skip changes: sequence numbers are taken when a row is
written, not when its transaction commits, so a transaction that took seq 10 may commit
after one that took seq 11 and was already pulled. The cursor therefore carries a snapshot
(`pg_current_snapshot()`): a pull returns the rows whose writing transaction is NOT visible
in the previous snapshot (it had not committed when the phone last pulled) but IS visible in
the current one (it has committed now), ordered by change_seq. A transaction still running
now is not visible in the current snapshot: it comes in a later pull, and is never lost.

Pages: page k+1 continues after the last change_seq of page k against the same pair of
snapshots (so every page of one pull sees one consistent set of changes, and each change
comes exactly once); when a pull is complete the next cursor is {prev: current snapshot}.

A transaction that has itself written (a test's, or one that pulls after a write) does not
see its own xid as visible in its snapshot; its snapshot is therefore recorded with its own
xid and the change sequence's value at that moment, and its own writes up to that value
count as visible. A pull request is read-only (no xid of its own), so in production this
branch never applies; it keeps deltas exact inside one transaction (the tests').

The cursor also carries a hash of the actor's scope (their grids, and whether they may see
key-person tags): when it changed, the pull starts over as a full sync with `reset: true`,
since changes in a grid the phone did not hold before, or the removal of one it held, are
not changes of the records. A well-formed cursor from another database (its snapshot lies
in the future) also starts over. A malformed one is a 422.

Cursor format (opaque to phones): base64url (no padding) of compact JSON:
    {"v": 1, "h": "<scope hash>", "p": SNAP | null}                          complete pull
    {"v": 1, "h": "<scope hash>", "p": SNAP | null, "c": SNAP, "a": <seq>}   mid-pull
    SNAP = {"s": "<xmin:xmax:xip,...>"} or {"s": ..., "x": <own xid>, "q": <seq>}
`p` null means "from the beginning" (a full sync). A full sync sends current records only
(ended ones and tombstones would only tell an empty phone to delete what it does not hold).

Statements per page: the snapshot; the changes, taking per record type at most limit+1 rows
from the (area_id, change_xid) or, on a full sync, (area_id, change_seq) index, and
tombstones (not on a full sync), and keeping the first limit+1 by change_seq; and the JSON
of the records among them (masked, with the tags the actor may see), built by PostgreSQL
(grid.sync.pages), byte for byte what the register's schemas would dump. The last one is
left out when there is no record to send (an empty pull is two cheap statements).

Push: a batch of operations, each in its own savepoint
------------------------------------------------------
See `push`. The (type, op) → service function table is `OPERATIONS`; the type → model and
masked schema table is `TYPES`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import marshmallow as ma
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.http import HTTP_STATUS_CODES

from geo.fields import GpsFix
from grid.areas import service as areas
from grid.registry import schemas as rs
from grid.registry.models import (
    Building,
    House,
    Household,
    Organisation,
    Person,
    RegisterRecord,
    Tombstone,
)
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
from grid.registry.scope import ID_FIELD, PHONE_FIELD, READ_PII, scoped
from grid.registry.tags import tags_visible_to, with_tags
from grid.registry.validation import normalize_id_number, normalize_uscc
from grid.sync import pages
from grid.sync.schemas import BATCH_MAX, PushItemSchema
from server import idempotency, pii
from server.api import error_payload
from server.auth.actor import Actor
from server.clock import local_today
from server.db import XID8
from server.errors import (
    Conflict,
    DomainError,
    Invalid,
    PreconditionFailed,
    field_errors,
)

# --- the record types sync knows ---------------------------------------------------------


@dataclass(frozen=True)
class SyncType:
    """A register type as sync sends it: its model and its masked response schema, and
    what to load before dumping a list of them (persons: the tags the actor may see)."""

    model: type[RegisterRecord]
    schema: type[ma.Schema]
    prepare: Callable[[Session, Actor, list], list] | None = None

    def dump(self, s: Session, actor: Actor, records: list) -> list[dict]:
        if self.prepare is not None:
            records = self.prepare(s, actor, records)
        return self.schema(many=True).dump(records)


TYPES: dict[str, SyncType] = {
    "building": SyncType(Building, rs.BuildingSchema),
    "house": SyncType(House, rs.HouseSchema),
    "household": SyncType(Household, rs.HouseholdSchema),
    "person": SyncType(Person, rs.PersonSchema, with_tags),
    "organisation": SyncType(Organisation, rs.OrganisationSchema),
}


def _dump_one(s: Session, actor: Actor, kind: str, record: Any) -> dict:
    return TYPES[kind].dump(s, actor, [record])[0]


# --- cursor ------------------------------------------------------------------------------

_SNAPSHOT_TEXT = re.compile(r"^(\d{1,19}):(\d{1,19}):((?:\d{1,19})(?:,\d{1,19})*)?$")
_MAX_XID = 2**63 - 1
_SCOPE_HASH = re.compile(r"^[0-9a-f]{16}$")
_CURSOR_TEXT = re.compile(r"^[A-Za-z0-9_-]+$")


class PgSnapshot(sa.types.UserDefinedType):
    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "pg_snapshot"


class BadCursor(ValueError):
    pass


@dataclass(frozen=True)
class Snapshot:
    """A pg_snapshot as text, and for a transaction that had written, its own xid and the
    change sequence's value when the snapshot was taken."""

    text: str
    xid: int | None = None
    seq: int | None = None

    @property
    def xmin(self) -> int:
        return int(self.text.split(":", 1)[0])

    @property
    def xmax(self) -> int:
        return int(self.text.split(":", 2)[1])

    @property
    def horizon(self) -> int:
        """Every xid this snapshot can count as visible is below this."""
        return max(self.xmax, self.xid + 1 if self.xid is not None else 0)

    @property
    def floor(self) -> int:
        """Every xid this snapshot does not count as visible is at least this."""
        return min(self.xmin, self.xid if self.xid is not None else self.xmin)

    def encode(self) -> dict:
        out: dict[str, Any] = {"s": self.text}
        if self.xid is not None:
            out.update(x=self.xid, q=self.seq)
        return out

    @classmethod
    def decode(cls, value: Any) -> Snapshot:
        if not isinstance(value, dict) or set(value) - {"s", "x", "q"}:
            raise BadCursor("snapshot")
        text, xid, seq = value.get("s"), value.get("x"), value.get("q")
        match = _SNAPSHOT_TEXT.match(text) if isinstance(text, str) else None
        if match is None:
            raise BadCursor("snapshot text")
        xmin, xmax = int(match[1]), int(match[2])
        xip = [int(x) for x in match[3].split(",")] if match[3] else []
        if not (0 < xmin <= xmax <= _MAX_XID) or xip != sorted(set(xip)) or any(
                not xmin <= x < xmax for x in xip):
            raise BadCursor("snapshot values")
        if (xid is None) != (seq is None) or (xid is not None and not (
                _is_int(xid, 1, _MAX_XID) and _is_int(seq, 0, _MAX_XID))):
            raise BadCursor("own xid")
        return cls(text, xid, seq)


def _is_int(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


@dataclass(frozen=True)
class Cursor:
    scope: str
    prev: Snapshot | None  # None: from the beginning (full sync)
    cur: Snapshot | None = None  # set while a pull is under way (mid-pull pages)
    after: int = 0  # mid-pull: the last change_seq sent

    def encode(self) -> str:
        body: dict[str, Any] = {"v": 1, "h": self.scope,
                                "p": self.prev.encode() if self.prev else None}
        if self.cur is not None:
            body.update(c=self.cur.encode(), a=self.after)
        raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        if not _CURSOR_TEXT.match(text) or len(text) % 4 == 1:
            raise BadCursor("base64")
        try:
            body = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        except (binascii.Error, ValueError, RecursionError):
            raise BadCursor("json") from None
        if not isinstance(body, dict) or body.get("v") != 1:
            raise BadCursor("version")
        if set(body) - {"v", "h", "p", "c", "a"} or ("c" in body) != ("a" in body):
            raise BadCursor("keys")
        scope = body.get("h")
        if not isinstance(scope, str) or not _SCOPE_HASH.match(scope):
            raise BadCursor("scope")
        prev = None if body.get("p") is None else Snapshot.decode(body["p"])
        if "c" not in body:
            return cls(scope, prev)
        cur = Snapshot.decode(body["c"])
        if not _is_int(body["a"], 0, _MAX_XID):
            raise BadCursor("after")
        if prev is not None and prev.horizon > cur.horizon:
            raise BadCursor("snapshots out of order")
        return cls(scope, prev, cur, body["a"])


def parse_cursor(text: str | None) -> Cursor | None:
    """The cursor a phone sent (None: first sync); 422 naming `cursor` if malformed."""
    if not text:
        return None
    try:
        return Cursor.decode(text)
    except BadCursor:
        raise Invalid(field_errors("cursor", "Not a sync cursor of this server: send the "
                                             "next_cursor of your last pull, or none to "
                                             "sync from scratch.", location="query")) from None


def scope_hash(actor: Actor) -> str:
    """What decides which records and which of their fields a phone holds."""
    facts = {"paths": sorted(actor.area_paths), "all": actor.unrestricted,
             "key_tags": actor.can("person:read_key_tags")}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


def current_snapshot(s: Session) -> Snapshot:
    row = s.execute(sa.text(
        "SELECT pg_current_snapshot()::text AS snap, "
        "pg_current_xact_id_if_assigned()::text AS xid, "
        "(SELECT CASE WHEN is_called THEN last_value ELSE 0 END "
        " FROM registry_change_seq) AS seq")).one()
    if row.xid is None:
        return Snapshot(row.snap)
    return Snapshot(row.snap, int(row.xid), int(row.seq))


# --- pull --------------------------------------------------------------------------------


def _counts_in(snap: Snapshot, xid_col: Any, seq_col: Any) -> sa.ColumnElement[bool]:
    """The row's write is part of `snap` (its transaction had committed, or is the
    snapshot's own and came before it)."""
    visible = sa.func.pg_visible_in_snapshot(xid_col, sa.cast(snap.text, PgSnapshot()))
    if snap.xid is None:
        return visible
    # The own xid by its sequence numbers only: a snapshot leaves it out of its in-progress
    # list, so it reads as visible as soon as a later transaction has ended.
    own = xid_col == sa.cast(str(snap.xid), XID8())
    return sa.or_(sa.and_(visible, sa.not_(own)), sa.and_(own, seq_col <= snap.seq))


def _window(model: Any, prev: Snapshot | None, cur: Snapshot, after: int) -> list:
    """Rows written after `prev` and by `cur`, beyond change_seq `after`. The xid bounds
    make it a range scan of the (area_id, change_xid) index."""
    xid, seq = model.change_xid, model.change_seq
    conds = [xid < sa.cast(str(cur.horizon), XID8()), _counts_in(cur, xid, seq)]
    if after:
        conds.append(seq > after)
    if prev is not None:
        conds += [xid >= sa.cast(str(prev.floor), XID8()), sa.not_(_counts_in(prev, xid, seq))]
    return conds


_TOMBSTONE = len(TYPES)  # the branch number of tombstones (types are 0..4, in TYPES' order)


def _changed(actor: Actor, prev: Snapshot | None, cur: Snapshot, after: int, n: int
             ) -> sa.CompoundSelect:
    """The first `n` changes of the window by change_seq: (seq, branch, kind, id). Each
    type's rows come from a range of its own index (at most n of them), tombstones too."""
    branches = []
    for branch, (kind, spec) in enumerate(TYPES.items()):
        model = spec.model
        stmt = (scoped(model, actor)
                .with_only_columns(model.change_seq.label("seq"),
                                   sa.literal_column(str(branch)).label("branch"),
                                   sa.literal_column(f"'{kind}'", sa.String).label("kind"),
                                   model.id.label("id"))
                .where(*_window(model, prev, cur, after)).order_by(model.change_seq).limit(n))
        if prev is None:
            stmt = stmt.where(model.ended_at.is_(None))
        branches.append(sa.select(stmt.subquery()))
    if prev is not None:
        branches.append(sa.select(_tombstones(actor, prev, cur, after, n).subquery()))
    return sa.union_all(*branches).order_by("seq", "branch").limit(n)


def _tombstones(actor: Actor, prev: Snapshot, cur: Snapshot, after: int, n: int) -> sa.Select:
    """Records that left the actor's grids in the window (one item per record, at its last
    tombstone), except those back in the actor's grids now: a record that moved between
    two of the actor's grids, or left and came back, must not be deleted by the phone."""
    t = Tombstone
    back = sa.or_(*(sa.and_(t.object_type == kind, sa.exists().where(
        spec.model.id == t.object_id, areas.in_scope(spec.model.area_id, actor)))
        for kind, spec in TYPES.items()))
    last = sa.func.max(t.change_seq).label("seq")
    return (sa.select(last, sa.literal_column(str(_TOMBSTONE)).label("branch"),
                      t.object_type.label("kind"), t.object_id.label("id"))
            .where(areas.in_scope(t.area_id, actor), t.object_type.in_(list(TYPES)),
                   *_window(t, prev, cur, after), sa.not_(back))
            .group_by(t.object_type, t.object_id).order_by(last).limit(n))


def _records(actor: Actor, ids: dict[str, list[int]]) -> sa.CompoundSelect:
    """The JSON of these records (grid.sync.pages), still in the actor's grids: a record
    that left them since the changes were read comes back as a tombstone next pull."""
    tags = tags_visible_to(actor)
    birth_dates, year = actor.can(READ_PII), local_today().year
    branches = []
    for kind, record_ids in ids.items():
        model = TYPES[kind].model
        branches.append(
            scoped(model, actor)
            .with_only_columns(sa.literal_column(f"'{kind}'", sa.String).label("kind"),
                               model.id, model.version,
                               *(pages.data_columns(model, TYPES[kind].schema, tags,
                                                    birth_dates, year) if kind == "person"
                                 else pages.data_columns(model, TYPES[kind].schema)))
            .where(model.id == sa.any_(sa.bindparam(f"{kind}_ids", record_ids,
                                                    type_=ARRAY(sa.BigInteger)))))
    return sa.union_all(*branches)


def _items(s: Session, actor: Actor, changes: list[sa.Row]) -> str:
    """The page's items: tombstones as they are, records with their JSON (one statement
    for the types the page holds, none for a page of nothing or only tombstones).
    Rows are read by position: attribute access on 2,000 rows cost more than the rest."""
    ids: dict[str, list[int]] = {}
    for _seq, branch, kind, record_id in changes:
        if branch != _TOMBSTONE:
            ids.setdefault(kind, []).append(record_id)
    # (kind, id) -> (version, head, tail, lon, lat); columns in _records' order
    records = ({(r[0], r[1]): r[2:] for r in s.execute(_records(actor, ids))}
               if ids else {})
    point = pages.point_json
    items = []
    for seq, branch, kind, record_id in changes:
        if branch == _TOMBSTONE:
            items.append(f'{{"change_seq":{seq},"deleted":true,"id":{record_id},'
                         f'"type":"{kind}"}}')
            continue
        record = records.get((kind, record_id))
        if record is not None:
            version, head, tail, lon, lat = record
            # keys sorted as the app's JSON encoder writes them
            items.append(f'{{"change_seq":{seq},"data":{head}"location":{point(lon, lat)}'
                         f'{tail},"id":{record_id},"type":"{kind}","version":{version}}}')
    return ",".join(items)


def pull_json(s: Session, actor: Actor, cursor_text: str | None, limit: int) -> str:
    """One page of changes in the actor's grids since the cursor (see the module doc), as
    the JSON text of PullSchema: three statements (the snapshot, the changes, the records'
    JSON) whatever its size.
    """
    actor.require("registry:read")
    cursor = parse_cursor(cursor_text)
    now = current_snapshot(s)
    scope = scope_hash(actor)
    if cursor is not None and max(
            (snap.horizon for snap in (cursor.prev, cursor.cur) if snap), default=0
    ) > now.horizon:
        cursor = None  # from another database (or a restored one): start over
    reset = cursor is None or cursor.scope != scope
    if reset:
        prev, cur, after = None, now, 0
    elif cursor.cur is None:
        prev, cur, after = cursor.prev, now, 0
    else:
        prev, cur, after = cursor.prev, cursor.cur, cursor.after
    changes = s.execute(_changed(actor, prev, cur, after, limit + 1)).all()
    has_more = len(changes) > limit
    changes = changes[:limit]
    # Mid-pull: the same two snapshots, after the last change sent. Done: from `cur` on.
    following = Cursor(scope, prev, cur, changes[-1].seq) if has_more else Cursor(scope, cur)
    return (f'{{"has_more":{json.dumps(has_more)},"items":[{_items(s, actor, changes)}],'
            f'"next_cursor":{json.dumps(following.encode())},"reset":{json.dumps(reset)}}}')


def pull(s: Session, actor: Actor, cursor_text: str | None, limit: int) -> dict:
    """`pull_json`, parsed (for callers in Python)."""
    return json.loads(pull_json(s, actor, cursor_text, limit))


# --- push --------------------------------------------------------------------------------


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
    current: Callable[[Any], dict] = field(default=lambda record: {})  # for 412 bodies


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
    return Operation(schema, lambda s, a, it: update(s, a, it.id, it.data, it.version,
                                                     it.current))


def _end(kind: str) -> Operation:
    return Operation(rs.EndSchema, lambda s, a, it: end_record(
        s, a, kind, it.id, it.data["reason"], it.version, it.current))


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
        s, a, it.id, it.data["status"], it.data.get("reason"), it.version, it.current)),
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
    item.current = lambda record: _dump_one(s, actor, item.type, record)
    try:
        with s.begin_nested():
            record, status = operation.apply(s, actor, item), operation.status
            if isinstance(record, tuple):  # a create: (record, created)
                record, created = record
                status = idempotency.create_answer(created)[0]
            s.flush()
            body = _dump_one(s, actor, item.type, record)
        return {"index": index, "status": status, "body": body}
    except (PreconditionFailed, StaleDataError) as exc:
        record = _already_applied(s, actor, item)
        if record is not None:
            return {"index": index, "status": 200, "body": _dump_one(s, actor, item.type, record)}
        if isinstance(exc, StaleDataError):  # a concurrent writer passed the version check too
            raise PreconditionFailed("This record changed since you read it",
                                     current=_current(s, actor, item)) from None
        raise
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

