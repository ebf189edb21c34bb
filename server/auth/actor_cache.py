"""Actors remembered between requests, and forgotten the moment they change.

Resolving the actor (account, session, roles and the enrichers' scope) was one database
round trip on every authenticated request, about a third of the fixed cost of a small read
(bench/README.md, "A cheaper request"). The actor of a (user, session) is now kept for
ACTOR_CACHE_SECONDS. Revocation stays immediate because the database says when an actor
changes: triggers (migration 0016) on every table the actor statement reads — the account,
its sessions, its roles, and what the enrichers read (memberships, departments, area paths)
— `NOTIFY actor_changed, '<user id>'` (`'*'` for all), inside the changing transaction, so
the notice is sent when it commits and never for a rollback. This process LISTENs on a
connection of its own and, before each cache lookup, reads the notices already delivered
(a non-blocking read, no thread): the users named are forgotten.

When the listening connection cannot be opened or breaks, the cache is emptied and not used
until it is back: the database is asked on every request, as before. An actor loaded while a
notice arrives is not stored (the generation check), so a load that raced a revocation
cannot put the old actor back. Not for PgBouncer in transaction mode (no LISTEN there): set
ACTOR_CACHE_SECONDS=0.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from typing import Any

import psycopg2
import sqlalchemy as sa

CHANNEL = "actor_changed"
MAX_ENTRIES = 20_000  # emptied when full: cheaper than LRU bookkeeping
RETRY_S = 5.0  # a lost listener is reopened at most this often

log = logging.getLogger(__name__)


class ActorCache:
    """Actors by (user id, session id); `seconds` = 0 turns it off."""

    def __init__(self, url: sa.URL | str, seconds: float) -> None:
        self.seconds = seconds
        self._url = sa.make_url(url)
        self._lock = threading.Lock()
        self._entries: dict[int, dict[uuid.UUID, tuple[Any, float]]] = {}
        self._size = 0
        self._listener: Any = None
        self._pid: int | None = None
        self._next_try = 0.0
        self.generation = 0  # moves on every notice: a load that saw it move is not stored

    @property
    def enabled(self) -> bool:
        return self.seconds > 0

    def get(self, user_id: int, session_id: uuid.UUID) -> tuple[Any | None, int]:
        """The cached actor (or None) and the generation to hand back to `put`."""
        if not self.enabled:
            return None, -1
        with self._lock:
            if not self._listening():
                return None, -1
            entry = self._entries.get(user_id, {}).get(session_id)
            if entry is not None and entry[1] > time.monotonic():
                return entry[0], self.generation
            return None, self.generation

    def put(self, user_id: int, session_id: uuid.UUID, actor: Any, generation: int) -> None:
        if generation < 0:
            return
        with self._lock:
            if not self._listening() or generation != self.generation:
                return  # a notice came in while the actor was loaded: it may be stale
            if self._size >= MAX_ENTRIES:
                self._forget_all()
            sessions = self._entries.setdefault(user_id, {})
            self._size += session_id not in sessions
            sessions[session_id] = (actor, time.monotonic() + self.seconds)

    def close(self) -> None:
        with self._lock:
            self._drop_listener()

    # --- the listening connection -------------------------------------------------------

    def _listening(self) -> bool:
        """Open (once per process: gunicorn forks) and drain the LISTEN connection."""
        if self._pid != os.getpid():  # a forked child must not share its parent's socket
            self._listener, self._pid = None, os.getpid()
            self._forget_all()
        if self._listener is None and not self._listen():
            return False
        try:
            # Twice: a connection the server closed reads its last message on the first
            # poll and only raises on the next.
            self._listener.poll()
            self._listener.poll()
            while self._listener.notifies:
                self._forget(self._listener.notifies.pop(0).payload)
            return True
        except psycopg2.Error as exc:
            log.warning("actor cache: lost the LISTEN connection (%s); asking the database "
                        "on every request until it is back", exc)
            self._drop_listener()
            return False

    def _listen(self) -> bool:
        now = time.monotonic()
        if now < self._next_try:
            return False
        self._next_try = now + RETRY_S
        try:
            url = self._url
            conn = psycopg2.connect(host=url.host, port=url.port, dbname=url.database,
                                    user=url.username, password=url.password,
                                    application_name="actor-cache", connect_timeout=2,
                                    **dict(url.query))
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(f"LISTEN {CHANNEL}")
        except psycopg2.Error as exc:
            log.warning("actor cache: cannot LISTEN (%s); actors are loaded on every request",
                        exc)
            return False
        self._listener = conn
        self._forget_all()  # notices sent while nobody listened are lost: start empty
        return True

    def _drop_listener(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(psycopg2.Error):
                self._listener.close()
        self._listener = None
        self._forget_all()

    def _forget(self, payload: str) -> None:
        self.generation += 1
        if payload == "*" or not payload.isdigit():
            self._forget_all()
            return
        self._size -= len(self._entries.pop(int(payload), {}))

    def _forget_all(self) -> None:
        self.generation += 1
        self._entries.clear()
        self._size = 0
