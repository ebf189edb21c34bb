"""The sync cursor (同步游标): where a phone's last pull ended — snapshots of committed
transactions and a hash of the actor's scope (see grid.sync.pull for why a snapshot).

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
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.auth.actor import Actor
from server.errors import Invalid, field_errors

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
