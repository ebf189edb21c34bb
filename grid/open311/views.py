"""Open311 GeoReport v2 endpoints under /open311: discovery, services, service
definitions, POST and GET requests, each as .json or .xml.

They are not in /api/openapi.json: their contract is the GeoReport v2 specification, and
their errors are the spec's list of {code, description}, not the one error shape (see the
README, "Open311 (GeoReport v2) for integrators").
"""

from __future__ import annotations

import logging

from flask import Response, current_app, g, request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException

from grid.open311 import formats, service
from grid.open311.schemas import json_params, query_params, split_params
from server import db, idempotency
from server.api import Blueprint
from server.errors import BadRequest, DomainError, NotFound

log = logging.getLogger("grid.open311")


class _SpecBlueprint(Blueprint):
    """A blueprint kept out of the OpenAPI document (the GeoReport spec documents it)."""

    def register_views_in_doc(self, *args, **kwargs) -> None:
        return None


blp = _SpecBlueprint("open311", __name__, url_prefix="/open311",
                     description="Open311 GeoReport v2 (documented by the spec and the README)")
blueprints = [blp]


@blp.errorhandler(Exception)
def _error(exc: Exception) -> Response:
    """Every failure of these endpoints in the spec's error format, in the asked format."""
    if not isinstance(exc, (DomainError, HTTPException)):
        log.exception("unhandled error", extra={"request_id": g.get("request_id")})
    status, entries, headers = service.error_entries(exc)
    fmt = (request.view_args or {}).get("fmt")
    return formats.errors(fmt if fmt in formats.FORMATS else "json", status, entries, headers)


def _format(fmt: str) -> None:
    if fmt not in formats.FORMATS:
        raise NotFound("Ask for .json or .xml")


def _caller(s, params: MultiDict, required: bool = False):
    api_key = params.get("api_key") or request.args.get("api_key")
    return service.caller(s, api_key, request.remote_addr, g.get("request_id"),
                          required=required,
                          per_ip_per_minute=current_app.config["OPEN311_READS_PER_MINUTE"])


@blp.route("/discovery.<fmt>")
def discovery(fmt: str) -> Response:
    """Service Discovery: where the GeoReport v2 endpoint is, its formats, how to get a key."""
    _format(fmt)
    config = current_app.config
    with db.unit_of_work() as s:
        _caller(s, request.args)
        # The configured public address, not the request's Host (any client can send one);
        # without it the request's, whose X-Forwarded-* count only behind TRUSTED_PROXIES.
        body = service.discovery(
            s, config["PUBLIC_BASE_URL"] or request.url_root, config["OPEN311_CONTACT"],
            config["OPEN311_KEY_SERVICE"])
    return formats.render(fmt, "discovery", body)


@blp.route("/v2/services.<fmt>")
def services(fmt: str) -> Response:
    _format(fmt)
    with db.unit_of_work() as s:
        _caller(s, request.args)
        body = service.services(s)
    return formats.render(fmt, "services", body)


@blp.route("/v2/services/<string:service_code>.<fmt>")
def service_definition(service_code: str, fmt: str) -> Response:
    _format(fmt)
    with db.unit_of_work() as s:
        _caller(s, request.args)
        body = service.service_definition(s, service_code)
    return formats.render(fmt, "service_definition", body)


def _posted() -> MultiDict:
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise BadRequest("Send a form (application/x-www-form-urlencoded) or a JSON object")
        return json_params(body)
    return request.form


@blp.route("/v2/requests.<fmt>", methods=["GET", "POST"])
def requests(fmt: str) -> Response:
    """GET: public requests (filters of the spec, paged); POST: a new request (api_key)."""
    _format(fmt)
    if request.method == "GET":
        with db.unit_of_work() as s:
            _caller(s, request.args)
            body = service.find_requests(s, query_params(request.args))
        return formats.render(fmt, "service_requests", body)
    params = _posted()
    with db.unit_of_work() as s:  # its own unit: the key's count stays if the intake fails
        client, actor = _caller(s, params, required=True)
    fields, attributes = split_params(params)
    fields.pop("api_key", None)
    with db.unit_of_work() as s:
        body, created = service.post_request(s, client, actor, fields, attributes)
    status, headers = idempotency.create_answer(created)
    return formats.render(fmt, "service_requests", body, status, headers)


@blp.route("/v2/requests/<string:service_request_id>.<fmt>")
def one_request(service_request_id: str, fmt: str) -> Response:
    _format(fmt)
    with db.unit_of_work() as s:
        _caller(s, request.args)
        body = service.get_request(s, service_request_id)
    return formats.render(fmt, "service_requests", body)


@blp.route("/<path:anything>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def unknown(anything: str) -> Response:
    """Anything else under /open311 answers in the spec's format too."""
    raise NotFound("No such Open311 resource (see /open311/discovery.json)")
