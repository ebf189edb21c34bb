"""flask-smorest Api and Blueprint, the pager's parameters, and the one error shape.

Every failure leaves as `{"code", "status", "message", "errors"?, ...extra}`: werkzeug's
HTTP errors (keeping their `Allow`, `Retry-After`, `WWW-Authenticate` headers, which
flask-smorest's own handler drops), domain errors raised by services, JWT errors, and
unexpected exceptions (500, logged with the request id, never a stack trace on the wire).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC
from typing import Any

import flask_smorest
import marshmallow as ma
from apispec import BasePlugin
from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, InternalServerError

from geo import fields as geo_fields
from server.db import unavailable
from server.errors import DomainError, PreconditionFailed, ServiceUnavailable, Stale
from server.validators import MOBILE_RE, USERNAME_RE, validate_mobile, validate_username

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
    # No catch-all `default`: every operation lists its real statuses (`_StatusesPlugin`).
    DEFAULT_ERROR_RESPONSE_NAME = None

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

        if isinstance(error, Stale):
            error.extra["current"] = present_current(error.record)

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


# The resource's own response schema for each versioned model, registered once at wiring
# (server/modules.py Registry.current_schema): how a 412 (`Stale`) shows the record as it
# is now. A presenter runs in the request, after the failed unit of work rolled back, so
# the record it reads is the one in the database.
current_schemas: dict[type, Callable[[Any], Any]] = {}


def present_current(record: Any) -> Any:
    """The record of a 412 in its resource's response schema."""
    for cls in type(record).__mro__:
        present = current_schemas.get(cls)
        if present is not None:
            return present(record)
    log.error("no current schema registered for %s", type(record).__name__)
    return {"id": getattr(record, "id", None), "version": getattr(record, "version", None)}


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


# --- the OpenAPI document ------------------------------------------------------------------
# What every operation may answer, derived from what it declares (security, path ids,
# arguments, bodies, versions) plus what a view adds with `statuses(...)`: the document
# lists real status codes, all in the one error shape, instead of a catch-all `default`.

_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again",
                                "schema": {"type": "integer", "minimum": 0}}}
ERROR_RESPONSES: dict[int, tuple[str, str, dict]] = {
    # status: (component name, description, headers)
    401: ("Unauthorized", "No valid credentials (token missing, expired or revoked)", {}),
    403: ("Forbidden", "Authenticated, but not allowed: `required` names the permission", {}),
    404: ("NotFound", "No such record, or not in your scope (outside it a record does not "
                      "exist)", {}),
    400: ("BadRequest", "The body is not JSON (or not the media type declared)", {}),
    409: ("Conflict", "Not possible now (`allowed`: the actions allowed), or a duplicate "
                      "(`existing`)", {}),
    412: ("PreconditionFailed", "The version sent is stale: `current` is the record as it is "
                                "now; re-read and retry", {}),
    413: ("PayloadTooLarge", "The body is larger than the server accepts", {}),
    423: ("Locked", "The account is locked for a while after repeated wrong passwords", {}),
    415: ("UnsupportedMediaType", "A file type the server does not accept", {}),
    422: ("UnprocessableEntity", "Invalid arguments: `errors` maps each location "
                                "(json, query, path, headers, form, files) to its fields", {}),
    428: ("PreconditionRequired", "No version sent: send `If-Match` (or `version` in the "
                                  "body)", {}),
    429: ("TooManyRequests", "Rate limit reached", _RETRY_AFTER),
    503: ("ServiceUnavailable", "The database cannot be reached for now", _RETRY_AFTER),
}

IF_MATCH = {
    "in": "header", "name": "If-Match", "required": False,
    "description": (
        "The version you based this change on, as the ETag of your read (`\"3\"` or "
        "`W/\"3\"`). Send it here or as `version` in the body; with neither the answer is "
        "428, with a stale one 412 and the current record (`current`)."),
    "schema": {"type": "string", "pattern": r'^(W/)?"[0-9]+"$', "example": '"3"'},
}

PAGINATION_HEADER = {
    "description": (
        "Pagination metadata as JSON text: `{\"total\", \"total_pages\", \"first_page\", "
        "\"last_page\", \"page\", \"previous_page\"?, \"next_page\"?}`"),
    "schema": {"type": "string", "example": '{"total": 42, "total_pages": 5, '
               '"first_page": 1, "last_page": 5, "page": 1, "next_page": 2}'},
}

SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                   "description": "The access token of POST /auth/login or /auth/refresh"},
    # Server-to-server callers (api clients of a kind, e.g. the 12345 hotline) sign requests.
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key",
               "description": "The client's key_id (POST /api-clients)"},
    "apiTimestamp": {"type": "apiKey", "in": "header", "name": "X-Timestamp",
                     "description": "Unix seconds, within 5 minutes of the server's clock"},
    "apiSignature": {"type": "apiKey", "in": "header", "name": "X-Signature",
                     "description": "hex HMAC-SHA256(secret, timestamp + \".\" + body)"},
}
SIGNED_REQUEST = [{"apiKey": [], "apiTimestamp": [], "apiSignature": []}]


def statuses(*codes: int):
    """Document statuses a view may answer beyond those its declarations imply (e.g. 409
    for a duplicate, 429 for a rate limit)."""

    def decorator(func):
        apidoc = getattr(func, "_apidoc", {})
        apidoc.setdefault("manual_doc", {}).setdefault("x-statuses", []).extend(codes)
        func._apidoc = apidoc
        return func

    return decorator


def link(status: int, name: str, method: str, path: str, description: str,
         **parameters: str):
    """Declare an OpenAPI link from this operation's `status` answer to `method path`:
    what a client (and schemathesis' stateful phase) does next with what it got back.
    Parameters are runtime expressions (`$response.body#/id`) or constants; a header is
    named `header.If-Match`."""
    reference = "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method.lower()

    def decorator(func):
        apidoc = getattr(func, "_apidoc", {})
        links = apidoc.setdefault("manual_doc", {}).setdefault("x-links", {})
        links.setdefault(str(status), {})[name] = {
            "operationRef": reference, "description": description, "parameters": parameters}
        func._apidoc = apidoc
        return func

    return decorator


def _body_schema(spec, operation: dict) -> dict:
    content = operation.get("requestBody", {}).get("content", {})
    schema = next(iter(content.values()), {}).get("schema", {})
    if isinstance(schema, dict) and "$ref" in schema:
        return spec.components.schemas.get(schema["$ref"].rsplit("/", 1)[-1], {})
    return schema if isinstance(schema, dict) else {}


def _is_versioned(spec, path: str, method: str, operation: dict) -> bool:
    """An update of an existing record whose body may carry the version it was based on."""
    if method == "post" and "{" not in path:
        return False  # a create: its schema's `version` is for updates through the same shape
    version = _body_schema(spec, operation).get("properties", {}).get("version", {})
    return bool(version) and not version.get("readOnly")


class _StatusesPlugin(BasePlugin):
    """Turns each operation's declarations into the statuses it may answer."""

    def init_spec(self, spec) -> None:
        self.spec = spec

    def operation_helper(self, path: str | None = None, operations: dict | None = None,
                         **kwargs: Any) -> None:
        for method, operation in (operations or {}).items():
            self._document(path or "", method, operation)

    def _document(self, path: str, method: str, operation: dict) -> None:
        responses = operation.setdefault("responses", {})
        for status, links in operation.pop("x-links", {}).items():
            response = responses.get(status, responses.get(int(status)))
            response.setdefault("links", {}).update(links)
        codes = set(operation.pop("x-statuses", ()))
        security = operation.get("security") or []
        if security:
            codes |= {401, 403}
        parameters = operation.get("parameters") or []
        named = [p.get("name", "") for p in parameters if isinstance(p, dict)]
        named += list(_body_schema(self.spec, operation).get("properties", {}))
        if "{" in path or any(name.endswith("_id") for name in named):
            codes.add(404)  # a record named in the path, a filter or the body does not exist
        if parameters or operation.get("requestBody") or "{" in path:
            codes.add(422)
        if "client_uuid" in named:
            codes.add(409)  # the same client_uuid with other content
        if operation.get("requestBody"):
            codes.add(413)
            if "application/json" in operation["requestBody"].get("content", {}):
                codes.add(400)
            if "multipart/form-data" in operation["requestBody"].get("content", {}):
                codes.add(415)
        if _is_versioned(self.spec, path, method, operation):
            codes |= {409, 412, 428}
            operation.setdefault("parameters", []).append(dict(IF_MATCH))
            operation["description"] = (operation.get("description", "") + (
                "\n\n**Versioned**: send the version you edited as `If-Match` (the ETag of "
                "your read) or `version` in the body. Neither: 428; stale: 412 with the "
                "current record.")).strip()
        if path not in ("/healthz",):
            codes.add(503)
        for code in sorted(codes):
            if str(code) not in responses and code not in responses:
                responses[str(code)] = ERROR_RESPONSES[code][0]
        for response in responses.values():
            headers = response.get("headers", {}) if isinstance(response, dict) else {}
            if headers.get("X-Pagination") == "PAGINATION":
                headers["X-Pagination"] = PAGINATION_HEADER
        for code, response in list(responses.items()):
            if response == "UNPROCESSABLE_ENTITY":
                responses[code] = ERROR_RESPONSES[422][0]


def _point_reference(self, field: ma.fields.Field, ret: dict, **kwargs: Any) -> dict:
    """Every Point field is the one `Point` component (nullable where the field is)."""
    if not isinstance(field, geo_fields.Point):
        return {}
    reference: dict = dict(geo_fields.POINT_REFERENCE)
    if ret.get("nullable"):
        reference["nullable"] = True
    return reference


_DATE_2000S = r"^20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"


def _rules_as_schema(self, field: ma.fields.Field, ret: dict, **kwargs: Any) -> dict:
    """Rules the validators enforce, spelled in the schema (patterns, exclusive bounds)."""
    extra: dict = {}
    validators = getattr(field, "validators", ())
    for validator in validators:
        if isinstance(validator, ma.validate.Range):
            # OpenAPI 3.0 spells "> 0" as minimum 0 + exclusiveMinimum true (apispec omits it)
            if validator.min is not None and not validator.min_inclusive:
                extra["exclusiveMinimum"] = True
            if validator.max is not None and not validator.max_inclusive:
                extra["exclusiveMaximum"] = True
    if isinstance(field, ma.fields.URL):
        extra["format"] = "uri"  # apispec says "url", which is no OpenAPI format
        schemes = next((v.schemes for v in validators if isinstance(v, ma.validate.URL)), ())
        if schemes and set(schemes) <= {"http", "https"}:
            extra["pattern"] = "^https?://[^\\s/$.?#].[^\\s]*$"
    any_of = ret.get("anyOf")
    if isinstance(any_of, list) and {"type": "object", "nullable": True} in any_of:
        # apispec's nullable reference (3.0) is "any object or the schema": say "the schema
        # or null" instead, so that an empty object is not documented as valid.
        ret.pop("anyOf")
        extra["allOf"] = [s for s in any_of if s != {"type": "object", "nullable": True}]
        extra["nullable"] = True
    if validate_mobile in validators:
        extra["pattern"] = MOBILE_RE.pattern
        extra.setdefault("example", "13800138000")
    if validate_username in validators:
        extra["pattern"] = USERNAME_RE.pattern
        extra["description"] = ((ret.get("description") or "") + " Not mobile-shaped "
                                "(that would read as a phone at login).").strip()
    if ret.get("format") == "date" and ret.get("x-minimum") == "2000-01-01" \
            and ret.get("x-maximum") == "2099-12-31":
        extra["pattern"] = _DATE_2000S  # a date from 2000 to 2099, as the Range refuses others
    return extra


API_DESCRIPTION = """\
The API of grid-based social governance (网格化社会治理): grid workers' phones, residents'
apps and the street office's console.

Rules that hold for every operation:

- **Errors** have one shape (`Error`): `code` (the HTTP status), `status`, `message`,
  `errors` (`{location: {field: [messages]}}` on 422), and per status `allowed` (409),
  `current` (412), `required` (403). Each operation lists the statuses it may answer.
- **Strings never contain NUL** (U+0000): PostgreSQL text cannot hold it; any input
  (body, query, path, header, form) with one is a 422 naming the field.
- **Versions**: updates of versioned records need the version they were based on, as
  `If-Match` (the ETag of the read) or `version` in the body: neither is 428, a stale one
  412 with the current record in `current`.
- **Points** are the `Point` component: lon/lat in a `crs` (wgs84, gcj02, bd09); stored in
  WGS-84; `?crs=` chooses the system of the answer.
- **Lists** are paginated with `page`/`page_size`; `X-Pagination` carries the totals as
  JSON text.
"""


def init_api(app: Flask) -> Api:
    geo_fields.set_max_future(app.config["GPS_MAX_FUTURE_S"])
    api = Api(app, spec_kwargs={"extra_plugins": [_StatusesPlugin()]})
    api.spec.options.setdefault("info", {})["description"] = API_DESCRIPTION
    components = api.spec.components
    for name, scheme in SECURITY_SCHEMES.items():
        if name not in components.security_schemes:
            components.security_scheme(name, scheme)
    components.schema("Point", geo_fields.POINT_SCHEMA)
    for name, description, headers in ERROR_RESPONSES.values():
        response: dict = {"description": description,
                          "content": {"application/json": {"schema": _ERROR_REF}}}
        if headers:
            response["headers"] = headers
        components.response(name, response)
    api.ma_plugin.converter.add_attribute_function(_point_reference)
    api.ma_plugin.converter.add_attribute_function(_rules_as_schema)
    return api
