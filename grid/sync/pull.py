"""Pull (拉取): everything that changed in the actor's grids since a cursor, page by page
(issue 4, "Offline sync for phones"). The cursor itself is grid.sync.cursor.

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

Statements per page: the snapshot; the changes, taking per record type at most limit+1 rows
from the (area_id, change_xid) or, on a full sync, (area_id, change_seq) index, and
tombstones (not on a full sync), and keeping the first limit+1 by change_seq; and the JSON
of the records among them (masked, with the tags the actor may see), built by PostgreSQL
(grid.sync.pages), byte for byte what the register's schemas would dump. The last one is
left out when there is no record to send (an empty pull is two cheap statements).
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from grid.areas import service as areas
from grid.registry.models import Tombstone
from grid.registry.scope import READ_PII, scoped
from grid.registry.tags import tags_visible_to
from grid.sync import pages
from grid.sync.cursor import (
    Cursor,
    PgSnapshot,
    Snapshot,
    current_snapshot,
    parse_cursor,
    scope_hash,
)
from grid.sync.record_types import TYPES
from server.auth.actor import Actor
from server.clock import local_today
from server.db import XID8


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
