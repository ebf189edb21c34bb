"""Background jobs (后台任务): work too long for a request, run by `flask worker`.

A request that would take more than a second or two (a ledger import today; exports and
reports later) stores its input, creates a job row and answers `202` with the job; the
client polls `GET /jobs/{id}` for its state (queued → running → succeeded | failed), its
progress (done of total, as the job counts them: rows for an import) and, once finished,
its result (the report) or its error (the one error shape, as the request would have
answered it).

- A job is visible to the account that created it only; anyone else gets 404. It runs
  as that account: its roles and scope are read again when it starts, so a job of an
  account disabled or demoted meanwhile is refused as its request would be.
- Packages register a handler per kind in `handlers` at wiring (server/modules.py):
  `handler(session, actor, run) -> dict` does the work in the session's transaction and
  returns the result; a DomainError it raises is the job's error. The job's row is
  marked succeeded in that same transaction: the work and its "done" commit together.
- Claims as the outbox's (notifications/worker.py): the next queued job `FOR UPDATE SKIP
  LOCKED` (several workers may run), leased until now + `lease_s` under a fresh token;
  progress renews the lease from a connection of its own (a separate, short transaction,
  so that pollers see it while the job's own transaction is open). A worker that dies
  leaves its job leased; once the lease has passed another takes it again, up to
  `max_attempts` starts (a file that kills the worker every time is not retried forever).
- The input (an upload) is a blob of the app's blob store, owned by its job alone (a
  random key, not the content's hash) and deleted when the job finishes.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any

import sqlalchemy as sa
from flask import current_app, url_for
from marshmallow import fields
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, Session, mapped_column

from server import clock, db
from server.api import Blueprint, Schema, UtcDateTime, error_payload
from server.auth.actor import Actor, actor_enrichers, current_actor, login_required
from server.auth.models import User, UserRole
from server.auth.permissions import permissions_for
from server.db import Base
from server.errors import DomainError, Forbidden, NotFound
from server.storage.blobs import blob_key, blob_store

log = logging.getLogger("server.jobs")

STATES = ("queued", "running", "succeeded", "failed")


class JobBroken(DomainError):
    """500: a job that cannot run at all (no handler, or it kept killing the worker)."""

    status = 500


class Job(Base):
    """One piece of background work, its progress and its outcome."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(64), nullable=False)  # "ledger_import"
    state: Mapped[str] = mapped_column(sa.String(16), nullable=False, server_default="queued")
    created_by: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="RESTRICT"),
                                            nullable=False)
    # The area the job works on, when it has one (no foreign key: server/ knows no areas).
    area_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    params: Mapped[dict] = mapped_column(JSONB, nullable=False, server_default="{}")
    input_key: Mapped[str | None] = mapped_column(sa.String(200))  # blob store key
    input_name: Mapped[str | None] = mapped_column(sa.String(200))  # the upload's file name
    # The request that queued it, for the audit rows the job writes (as the request would).
    ip: Mapped[str | None] = mapped_column(sa.String(64))
    request_id: Mapped[str | None] = mapped_column(sa.String(64))
    progress_done: Mapped[int] = mapped_column(sa.Integer, nullable=False, server_default="0")
    progress_total: Mapped[int | None] = mapped_column(sa.Integer)  # None: not known
    result: Mapped[dict | None] = mapped_column(JSONB)
    error: Mapped[dict | None] = mapped_column(JSONB)  # the one error shape
    attempts: Mapped[int] = mapped_column(sa.Integer, nullable=False, server_default="0")
    claimed_until: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    claim_token: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (
        sa.CheckConstraint(f"state IN {STATES!r}", name="state"),
        sa.Index("ix_jobs_unfinished", "id", postgresql_where=sa.text(
            "state IN ('queued', 'running')")),
        sa.Index("ix_jobs_created_by", "created_by", "id"),
    )

    @property
    def progress(self) -> dict:
        return {"done": self.progress_done, "total": self.progress_total}


# --- creating and reading ------------------------------------------------------------------


def input_key(ext: str) -> str:
    """A fresh blob key for a job's input: random, so that each job owns (and deletes) its
    own blob, whoever uploads the same bytes."""
    return blob_key(secrets.token_hex(32), ext)


def create(s: Session, actor: Actor, kind: str, *, params: dict | None = None,
           area_id: int | None = None, input_key: str | None = None,
           input_name: str | None = None, total: int | None = None) -> Job:
    """A queued job of the actor (in the caller's transaction)."""
    if kind not in handlers:
        raise RuntimeError(f"no handler for jobs of kind {kind!r}")
    job = Job(kind=kind, state="queued", created_by=actor.user_id, area_id=area_id,
              params=params or {}, input_key=input_key, input_name=input_name,
              ip=actor.ip, request_id=actor.request_id, progress_done=0,
              progress_total=total, attempts=0, created_at=clock.now())
    s.add(job)
    s.flush()
    return job


def get(s: Session, actor: Actor, job_id: int) -> Job:
    """The actor's own job; anyone else's does not exist for them (404)."""
    job = s.get(Job, job_id)
    if job is None or actor.user_id is None or job.created_by != actor.user_id:
        raise NotFound("No such job")
    return job


# --- running -------------------------------------------------------------------------------


@dataclass
class JobRun:
    """What a handler gets: the job's parameters, its input (an open binary file, or None),
    and `progress(done, total=None)` to report how far it is."""

    job_id: int
    params: dict
    input: IO[bytes] | None
    input_name: str | None
    progress: Callable[..., None]
    total: int | None = None


Handler = Callable[[Session, Actor, JobRun], dict]

#: kind → handler; packages add theirs at wiring (grid/ledgers/wiring.py).
handlers: dict[str, Handler] = {}


@dataclass(frozen=True)
class JobSettings:
    lease_s: float = 300.0
    max_attempts: int = 2
    progress_every_s: float = 1.0  # progress writes at most this often

    @classmethod
    def from_config(cls, config: Any) -> JobSettings:
        return cls(lease_s=config["JOB_LEASE_S"], max_attempts=config["JOB_MAX_ATTEMPTS"])


_CLAIM = sa.text("""
WITH next AS (
    SELECT id FROM jobs
    WHERE state = 'queued' OR (state = 'running' AND claimed_until < :now)
    ORDER BY id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs j
SET state = 'running', started_at = coalesce(j.started_at, :now), claimed_until = :until,
    claim_token = :token, attempts = j.attempts + 1
FROM next WHERE j.id = next.id
RETURNING j.id
""")

_PROGRESS = sa.text("""
UPDATE jobs SET progress_done = :done, progress_total = coalesce(:total, progress_total),
    claimed_until = :until
WHERE id = :id AND claim_token = :token
""")


@dataclass
class _Progress:
    """Writes progress (and renews the lease) on a connection of its own, committed at
    once, at most every `every_s` seconds. Without an engine (or when the job's row is not
    visible there, as in a test's transaction) the final figures are still written with
    the outcome."""

    engine: sa.Engine | None
    job_id: int
    token: uuid.UUID
    settings: JobSettings
    done: int = 0
    total: int | None = None
    _last: float = field(default=0.0)
    _conn: sa.Connection | None = None

    def __call__(self, done: int, total: int | None = None, *, force: bool = False) -> None:
        self.done = done
        if total is not None:
            self.total = total
        if self.engine is None:
            return
        now = time.monotonic()
        if not force and now - self._last < self.settings.progress_every_s:
            return
        self._last = now
        try:
            if self._conn is None:
                self._conn = self.engine.connect()
            until = clock.now() + timedelta(seconds=self.settings.lease_s)
            self._conn.execute(_PROGRESS, {"done": done, "total": total, "until": until,
                                           "id": self.job_id, "token": self.token})
            self._conn.commit()
        except sa.exc.SQLAlchemyError:  # progress is a courtesy: the job goes on
            log.warning("progress not written", extra={"job": self.job_id}, exc_info=True)
            self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def actor_of(s: Session, user_id: int, ip: str | None = None,
             request_id: str | None = None) -> Actor | None:
    """The account as a request of theirs would see it now (roles, scope), or None when it
    is disabled."""
    enrichers = tuple(actor_enrichers)
    roles = (sa.select(sa.func.coalesce(sa.func.array_agg(UserRole.role), sa.text("'{}'")))
             .where(UserRole.user_id == user_id).scalar_subquery())
    row = s.execute(sa.select(User.is_active, roles.label("roles"),
                              *(c for e in enrichers for c in e.columns(user_id)))
                    .where(User.id == user_id)).first()
    if row is None or not row.is_active:
        return None
    actor = Actor(user_id=user_id, roles=frozenset(row.roles),
                  permissions=permissions_for(frozenset(row.roles)), ip=ip,
                  request_id=request_id)
    for enricher in enrichers:
        actor = enricher.apply(actor, row)
    return actor


def _error(exc: DomainError) -> dict:
    from werkzeug.http import HTTP_STATUS_CODES

    return error_payload(exc.status, HTTP_STATUS_CODES.get(exc.status, "Error"), exc.message,
                         exc.errors, **exc.extra)


def _finish(s: Session, job_id: int, token: uuid.UUID, state: str, progress: _Progress,
            result: dict | None = None, error: dict | None = None) -> None:
    s.execute(sa.update(Job).where(Job.id == job_id, Job.claim_token == token).values(
        state=state, result=result, error=error, finished_at=clock.now(),
        progress_done=progress.done,
        progress_total=sa.func.coalesce(progress.total, Job.progress_total),
        claimed_until=None, claim_token=None))


def run_next(s: Session, store: Any, *, progress_engine: sa.Engine | None = None,
             settings: JobSettings = JobSettings(), now: datetime | None = None
             ) -> dict | None:
    """Claim the next job and run it to its end; {"job", "kind", "state"}, or None when no
    job waits. Commits (claim, then the work with its outcome)."""
    now = now or clock.now()
    token = uuid.uuid4()
    job_id = s.scalar(_CLAIM, {"now": now, "until": now + timedelta(seconds=settings.lease_s),
                               "token": token})
    if job_id is None:
        s.commit()
        return None
    job = s.get(Job, job_id, populate_existing=True)
    kind, params, key, name = job.kind, dict(job.params), job.input_key, job.input_name
    created_by, total, attempts = job.created_by, job.progress_total, job.attempts
    origin = (job.ip, job.request_id)
    s.commit()
    progress = _Progress(progress_engine, job_id, token, settings, total=total)
    state = "failed"
    try:
        if attempts > settings.max_attempts:
            raise JobBroken(f"The job stopped the worker {attempts - 1} times; it is not "
                            "tried again.")
        handler = handlers.get(kind)
        if handler is None:
            raise JobBroken(f"No worker handles jobs of kind {kind!r}.")
        actor = actor_of(s, created_by, *origin)
        if actor is None:
            raise Forbidden("The account that started this job is disabled.")
        with store.open(key) if key else nullcontext() as fh:
            result = handler(s, actor, JobRun(job_id, params, fh, name, progress, total))
        _finish(s, job_id, token, "succeeded", progress, result=result)
        s.commit()
        state = "succeeded"
    except DomainError as exc:
        s.rollback()
        _finish(s, job_id, token, "failed", progress, error=_error(exc))
        s.commit()
    except Exception:
        log.exception("job failed", extra={"job": job_id, "kind": kind})
        s.rollback()
        _finish(s, job_id, token, "failed", progress, error=error_payload(
            500, "Internal Server Error", f"The job failed unexpectedly; quote job {job_id} "
                                          "when reporting it."))
        s.commit()
    finally:
        progress.close()
    if key:
        try:
            store.delete(key)
        except OSError:
            log.warning("job input not deleted", extra={"job": job_id, "key": key},
                        exc_info=True)
    return {"job": job_id, "kind": kind, "state": state}


def run_jobs_task(s: Session) -> dict:
    """The worker's task: jobs one after another for up to 20 s (the other tasks get
    their turns between; a long job holds its turn until it ends)."""
    settings = JobSettings.from_config(current_app.config)
    engine = current_app.extensions["db_engine"]
    started, done = time.monotonic(), {}
    while time.monotonic() - started < 20:
        ran = run_next(s, blob_store(), progress_engine=engine, settings=settings)
        if ran is None:
            break
        done[ran["state"]] = done.get(ran["state"], 0) + 1
    return done




# --- API -----------------------------------------------------------------------------------


class JobProgressSchema(Schema):
    done = fields.Integer(metadata={"description": "Units done (rows, for an import)"})
    total = fields.Integer(allow_none=True, metadata={
        "description": "Units in all, when known (an import: the rows the file declares)"})


class JobSchema(Schema):
    id = fields.Integer()
    kind = fields.String(metadata={"example": "ledger_import"})
    state = fields.String(metadata={"enum": list(STATES)})
    progress = fields.Nested(JobProgressSchema)
    input_name = fields.String(allow_none=True, metadata={"description": "The upload's name"})
    created_at = UtcDateTime()
    started_at = UtcDateTime(allow_none=True)
    finished_at = UtcDateTime(allow_none=True)
    result = fields.Dict(allow_none=True, metadata={
        "description": "succeeded: what the job produced (an import: its report)"})
    error = fields.Dict(allow_none=True, metadata={
        "description": "failed: the one error shape (code, status, message, errors…), as "
                       "the request would have answered (an import with bad rows: 422 "
                       "with its `report`)"})


def accepted(job: Job) -> tuple[Job, int, dict]:
    """A view's answer for a job it created: 202, the job, and where to poll it."""
    return job, 202, {"Location": url_for("jobs.get_job", job_id=job.id)}


blp = Blueprint("jobs", __name__, url_prefix="/jobs",
                description="Background jobs (后台任务): state, progress and result")


@blp.route("/<int:job_id>")
@blp.response(200, JobSchema)
@login_required
def get_job(job_id: int):
    """A job you started: queued, running (progress), succeeded (result) or failed (error).
    Poll it until `finished_at` is set. Other people's jobs: 404."""
    with db.unit_of_work() as s:
        return get(s, current_actor(), job_id)
