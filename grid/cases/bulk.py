"""Bulk actions (批量操作): one action — accept, dispatch to one department, close, approve
a request… — applied to several cases in one request, each case in its own savepoint
through the same case action as `POST /cases/{id}/actions/{action}`, so that a case
someone else moved (412), one not in a state for it (409) or one out of scope (404) leaves
the others going through. Idempotent by the client UUID (server/idempotency.py): the same
request again answers the stored per-case results without acting twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session
from werkzeug.http import HTTP_STATUS_CODES

from grid.cases import actions
from grid.cases.models import CaseBulkRun, light_of
from server import idempotency
from server.auth.actor import Actor
from server.errors import Conflict, DomainError

# the actions a queue's selection can take at once (no per-case form: merge, handle,
# evaluate and the requests need one case at a time)
BULK_ACTIONS = ("accept", "reject", "dispatch", "sign", "return", "verify", "close",
                "approve", "refuse", "resume")
MAX_ITEMS = 100
OPERATION = "case_bulk_action"


def error_body(exc: DomainError) -> dict:
    """The one error shape (server/api.py error_payload) of an item's failure."""
    body = {"code": exc.status, "status": HTTP_STATUS_CODES.get(exc.status, "Error"),
            "message": exc.message}
    if exc.errors:
        body["errors"] = exc.errors
    body.update({k: v for k, v in exc.extra.items() if v is not None})
    return body


def _one(s: Session, actor: Actor, item: dict, action: str, data: dict,
         as_dict: Callable[[Any, list[str]], dict]) -> dict:
    """One case's action in a savepoint: its new state and version, or its error."""
    try:
        with s.begin_nested():
            # the single-case endpoint's action (engine: server/actions.py at merge)
            case = actions.act(s, actor, item["id"], action, dict(data), item["version"],
                               as_dict)
            done = {"id": case.id, "state": case.state, "version": case.version,
                    "light": light_of(case)}
    except DomainError as exc:
        return {"id": item["id"], "status": exc.status, "error": error_body(exc)}
    return {"id": item["id"], "status": 200, "case": done}


def apply(s: Session, actor: Actor, client_uuid: uuid.UUID, action: str, items: list[dict],
          data: dict, as_dict: Callable[[Any, list[str]], dict]) -> tuple[dict, bool]:
    """(the answer, whether it was made now) — False: a replay of the same request."""
    actor.require("case:read")
    payload = {"action": action, "items": items, "data": data}
    prior = idempotency.claim(s, client_uuid, actor.user_id, OPERATION, payload)
    if prior is not None:
        run = s.get(CaseBulkRun, int(prior[1]))
        if run is None or run.actor_id != actor.user_id:
            raise Conflict("This client_uuid was already used for a different request",
                           errors={"json": {"client_uuid": ["Already used."]}})
        return run.answer, False
    results = [_one(s, actor, item, action, data, as_dict) for item in items]
    ok = sum(1 for r in results if r["status"] == 200)
    answer = {"action": action, "succeeded": ok, "failed": len(results) - ok,
              "results": results}
    run = CaseBulkRun(actor_id=actor.user_id, action=action, answer=answer)
    s.add(run)
    s.flush()
    idempotency.complete(s, client_uuid, "case_bulk_run", run.id)
    return answer, True

