"""Domain errors raised by services. `server.api` turns each into the one error shape.

Services never import Flask to fail: they raise one of these with what the client needs
to recover (the allowed next actions for 409, the current record for 412, the fields for 422).
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base class: an HTTP status, a message and optional extra payload keys."""

    status = 400
    # Most failures roll back the unit of work. A few record bookkeeping that must survive
    # the failure (failed-login counters, rate-limit hits): those set keep_changes.
    keep_changes = False

    def __init__(
        self,
        message: str,
        *,
        errors: dict | None = None,
        headers: dict | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra


class BadRequest(DomainError):
    status = 400


class Unauthorized(DomainError):
    """401. Carries `WWW-Authenticate: Bearer`, as HTTP requires of every 401 (RFC 9110
    §15.5.2) and as the JWT loaders' 401s already do."""

    status = 401

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("WWW-Authenticate", "Bearer")


class Forbidden(DomainError):
    status = 403


class NotFound(DomainError):
    """Also what a record outside the actor's scope answers: it does not exist for them."""

    status = 404


class Conflict(DomainError):
    """409: an illegal transition (extra `allowed`), a duplicate (extra `existing`)…"""

    status = 409


class PreconditionFailed(DomainError):
    """412: the client's version is stale; extra `current` carries the record as it is."""

    status = 412


class Stale(PreconditionFailed):
    """412 for a record that moved on: carries the record itself; the API answers with it
    in the resource's own response schema as `current` (the one way, server/api.py
    `current_schemas`, registered once per model at wiring)."""

    def __init__(self, record: Any, message: str = "This record changed since you read it"
                 ) -> None:
        super().__init__(message)
        self.record = record


class PreconditionRequired(DomainError):
    status = 428


class Invalid(DomainError):
    """422 with `errors` naming the fields: {"json": {"field": ["message"]}}."""

    status = 422

    def __init__(self, errors: dict, message: str = "Invalid input", **extra: Any) -> None:
        super().__init__(message, errors=errors, **extra)


class TooManyRequests(DomainError):
    status = 429
    keep_changes = True

    def __init__(self, message: str, retry_after: int, **extra: Any) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, int(retry_after)))}, **extra)
        self.retry_after = retry_after


def field_errors(field: str, *messages: str, location: str = "json") -> dict:
    """The `errors` value of a 422 for one field, in webargs' layout."""
    return {location: {field: list(messages)}}


def check_version(record: Any, expected: int | None, current: Any = None) -> None:
    """The one optimistic-concurrency check of an update: 428 without a version, `Stale`
    (412 with the record in its resource's schema) when it moved on."""
    if expected is None:
        raise PreconditionRequired("Send the version you edited (If-Match or `version`)")
    if expected != record.version:
        if current is not None:  # transitional: callers still passing a presenter
            raise PreconditionFailed("This record changed since you read it",
                                     current=current(record))
        raise Stale(record)


class ServiceUnavailable(DomainError):
    """503 with `Retry-After`: a dependency (the database) cannot be reached just now; the
    same request may succeed once it is back."""

    status = 503

    def __init__(self, message: str, retry_after: int = 5, **extra: Any) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, int(retry_after)))}, **extra)


class UriTooLong(DomainError):
    status = 414


class HeadersTooLarge(DomainError):
    status = 431
