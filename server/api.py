"""flask-smorest Api and Blueprint, the pager's parameters, and the one error shape.

Every failure leaves as `{"code", "status", "message", "errors"?, ...extra}`: werkzeug's
HTTP errors (keeping their `Allow`, `Retry-After`, `WWW-Authenticate` headers, which
flask-smorest's own handler drops), domain errors raised by services, JWT errors, and
unexpected exceptions (500, logged with the request id, never a stack trace on the wire).
"""

from __future__ import annotations

import logging
from datetime import UTC

import flask_smorest
import marshmallow as ma
from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, InternalServerError

from server.db import unavailable
from server.errors import DomainError, PreconditionFailed, ServiceUnavailable

log = logging.getLogger("server.api")

class Blueprint(flask_smorest.Blueprint):
    def arguments(self, schema, *args, **kwargs):
        """As flask-smorest's, with a schema class instantiated once here: webargs would
        build an instance (deep-copying its fields) on every request (~0.08 ms)."""
        if isinstance(schema, type):
            schema = schema()
        return super().arguments(schema, *args, **kwargs)


class Schema(ma.Schema):
    """Base of every request and response schema: unknown input fields are a 422."""

    class Meta:
        unknown = ma.RAISE
        ordered = True

# Seconds a client should wait before retrying while the database cannot be reached.
DB_RETRY_AFTER_S = 5

# Headers werkzeug sets on its exceptions that a client needs to recover.
_KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


class ErrorSchema(ma.Schema):
    """The one error shape (documentation; payloads are built in `error_payload`)."""

    code = ma.fields.Integer(metadata={"description": "HTTP status code"})
    status = ma.fields.String(metadata={"description": "HTTP status name"})
    message = ma.fields.String(metadata={"description": "What went wrong, for a person"})
    errors = ma.fields.Dict(metadata={"description": "Field errors: {location: {field: [..]}}"})
    allowed = ma.fields.List(
        ma.fields.String(), metadata={"description": "409: the actions allowed now"}
    )
    current = ma.fields.Dict(metadata={"description": "412: the record as it is now"})
    existing = ma.fields.Dict(metadata={"description": "409: the record this one duplicates"})
    required = ma.fields.String(metadata={"description": "403: the permission needed"})
    grid = ma.fields.Dict(metadata={"description": "422: the grid a point falls in"})
    request_id = ma.fields.String(metadata={"description": "Quote it when reporting a problem"})


class UtcDateTime(ma.fields.AwareDateTime):
    """An ISO-8601 time with an offset, converted to UTC on the way in. An offset PostgreSQL
    cannot store (beyond ±15:59) or a time that overflows is a 422, not a 500."""

    def _deserialize(self, value, attr, data, **kwargs):
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            return moment.astimezone(UTC)
        except (OverflowError, ValueError) as exc:
            raise ma.ValidationError("Not a representable time.") from exc


def error_payload(code: int, status: str, message: str | None, errors=None, **extra) -> dict:
    payload = {"code": code, "status": status}
    if message:
        payload["message"] = message
    if errors:
        payload["errors"] = errors
    payload.update({k: v for k, v in extra.items() if v is not None})
    rid = g.get("request_id")
    if rid:
        payload["request_id"] = rid
    return payload


def json_text_response(text: str) -> Response:
    """A JSON text built elsewhere (e.g. by PostgreSQL), sent as jsonify sends a body."""
    return Response(text + "\n", mimetype="application/json")


class Api(flask_smorest.Api):
    ERROR_SCHEMA = ErrorSchema

    def _register_error_handlers(self) -> None:
        super()._register_error_handlers()
        self._app.register_error_handler(DomainError, self.handle_domain_error)
        self._app.register_error_handler(Exception, self.handle_unexpected)

    def handle_http_exception(self, error: HTTPException):
        data = getattr(error, "data", None) or {}
        errors = data.get("errors") or data.get("messages")
        message = data.get("message") or error.description
        headers = dict(data.get("headers") or {})
        response_headers = error.get_headers() if hasattr(error, "get_headers") else []
        for name, value in response_headers:
            if name in _KEPT_HEADERS:
                headers[name] = value
        if isinstance(error, InternalServerError):
            message = "Internal server error"
        payload = error_payload(error.code, error.name, message, errors)
        return payload, error.code, headers

    def handle_domain_error(self, error: DomainError):
        from werkzeug.http import HTTP_STATUS_CODES

        payload = error_payload(
            error.status,
            HTTP_STATUS_CODES.get(error.status, "Error"),
            error.message,
            error.errors,
            **error.extra,
        )
        return payload, error.status, error.headers

    def handle_unexpected(self, error: Exception):
        if isinstance(error, HTTPException):
            return self.handle_http_exception(error)
        if unavailable(error):  # PostgreSQL down or unreachable: retry, not a bug
            log.warning("database unavailable", extra={"request_id": g.get("request_id"),
                                                       "error": str(error).splitlines()[0]})
            return self.handle_domain_error(ServiceUnavailable(
                "The database cannot be reached just now; try again shortly",
                retry_after=DB_RETRY_AFTER_S))
        log.exception("unhandled error", extra={"request_id": g.get("request_id")})
        return self.handle_http_exception(InternalServerError())


def expected_version(body: dict) -> int | None:
    """The version a client based its update on: `If-Match: "3"` (or W/"3"), else the
    body's `version` field, else None (the service answers 428)."""
    header = request.headers.get("If-Match", "").strip()
    if header:
        tag = header.removeprefix("W/").strip('"')
        if tag.isdigit():
            return int(tag)
        raise PreconditionFailed("If-Match must carry a version tag such as \"3\"")
    return body.pop("version", None)


def etag(version: int) -> dict:
    """Response headers for a single versioned resource."""
    return {"ETag": f'"{version}"'}


def init_api(app: Flask) -> Api:
    api = Api(app)
    return api
