"""The application factory."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, request, send_from_directory
from flask_migrate import Migrate
from marshmallow import ValidationError
from swagger_ui_bundle import swagger_ui_path

from geo.fields import set_output_crs
from server import apiclients, audit, db, health, idempotency, jobs, modules, pii, ratelimit
from server import config as config_module
from server.api import error_payload, init_api
from server.auth import service as auth_service
from server.auth.actor import authenticate_first
from server.auth.actor_cache import ActorCache
from server.auth.tokens import CachingJWTManager
from server.compress import init_compression
from server.errors import Invalid
from server.limits import init_limits
from server.logs import configure_logging, init_request_logging
from server.security import init_security
from server.storage import models as storage_models

log = logging.getLogger("server.app")
_DOCS_DIR = str(Path(__file__).parent / "docs")


def _jwt_error(message: str):
    body = error_payload(401, "Unauthorized", message)
    return jsonify(body), 401, {"WWW-Authenticate": "Bearer"}


def _init_jwt(app: Flask) -> None:
    jwt = CachingJWTManager(app)
    jwt.unauthorized_loader(lambda reason: _jwt_error(f"Log in first ({reason})"))
    jwt.invalid_token_loader(lambda reason: _jwt_error(f"Invalid token ({reason})"))
    jwt.expired_token_loader(lambda header, payload: _jwt_error("The token has expired"))
    jwt.revoked_token_loader(lambda header, payload: _jwt_error("The token was revoked"))
    jwt.needs_fresh_token_loader(lambda header, payload: _jwt_error("A fresh login is needed"))
    jwt.user_lookup_error_loader(lambda header, payload: _jwt_error("Unknown user"))


# A NUL escaped in a JSON text (an odd number of backslashes before u0000).
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _has_nul(*texts: Any) -> bool:
    return any(isinstance(t, str) and "\x00" in t for t in texts)


def _json_nul_path(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string (or key) in a JSON value that holds a NUL."""
    if isinstance(value, str):
        return (path or "_body") if "\x00" in value else None
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        here = f"{path}.{key}" if path else str(key)
        if _has_nul(key):
            return here
        found = _json_nul_path(item, here)
        if found:
            return found
    return None


def _nul_input() -> tuple[str, str] | None:
    """(location, name) of the first input of the request that holds a NUL character."""
    for name, value in (request.view_args or {}).items():
        if _has_nul(value):
            return "path", name
    for name, value in request.args.items(multi=True):
        if _has_nul(name, value):
            return "query", name
    for name, value in request.headers.items():
        if _has_nul(value):
            return "headers", name
    # The substring test first: the regex alone costs ~0.2 s on a 1 MB body.
    if request.is_json and b"\\u0000" in (data := request.get_data(cache=True)) \
            and _JSON_NUL.search(data):
        return "json", _json_nul_path(request.get_json(silent=True)) or "_body"
    if request.mimetype in _FORM_TYPES:
        for name, value in request.form.items(multi=True):
            if _has_nul(name, value):
                return "form", name
    return None


def _reject_nul_characters() -> None:
    """422 for any input holding a NUL character. PostgreSQL text cannot store one: psycopg2
    raises ValueError when a parameter holds one, which would be a 500 from whichever query
    first received it (a login name, a search term, a path parameter, the User-Agent kept
    with a session…). So no input may carry one, whatever the endpoint."""
    where = _nul_input()
    if where is not None:
        location, name = where
        raise Invalid({location: {name.replace("\x00", "\\u0000"): [
            "NUL (\\u0000) characters are not allowed."]}})


# Platform modules whose tables the migrations cover (imported for their models).
_PLATFORM_TABLES = (apiclients, audit, idempotency, jobs, ratelimit, storage_models)


class _MigrationTarget:
    """What Flask-Migrate wants as `db`: just the metadata (we do not use Flask-SQLAlchemy)."""

    metadata = db.Base.metadata


def _output_crs() -> None:
    """?crs=gcj02|bd09 on any request: points and geometries answer in that system."""
    try:
        set_output_crs(request.args.get("crs"))
    except ValidationError as exc:
        raise Invalid({"query": exc.messages}) from None


def _docs_assets(app: Flask) -> None:
    @app.route("/api/docs/assets/<path:filename>")
    def swagger_assets(filename: str):
        """Swagger UI from the swagger-ui-bundle package: the docs work offline."""
        return send_from_directory(str(swagger_ui_path), filename, max_age=86400)

    @app.route("/api/docs/swagger-init.js")
    def swagger_init():
        """Starts Swagger UI (server/templates/swagger_ui.html has no inline script)."""
        return send_from_directory(_DOCS_DIR, "swagger-init.js", max_age=3600)


def create_app(config: dict | None = None) -> Flask:
    """Build the app. `config` overrides the environment (tests pass their database)."""
    settings = config_module.load_config(config)
    problems = config_module.check_production(settings)
    if problems:
        raise RuntimeError("Refusing to start in production: " + "; ".join(problems))
    configure_logging(settings["LOG_LEVEL"])

    app = Flask(__name__)
    app.config.update(settings)
    if settings["TRUSTED_PROXIES"]:
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = settings["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)
    app.json.ensure_ascii = False  # Chinese names as they are, not \\u escapes
    pii.configure(settings["PII_KEYS"], settings["BLIND_INDEX_KEY"])
    auth_service.configure_passwords(
        settings["ARGON2_TIME_COST"], settings["ARGON2_MEMORY_KIB"], settings["ARGON2_PARALLELISM"]
    )
    db.init_db(app)
    app.extensions["actor_cache"] = ActorCache(settings["DATABASE_URL"],
                                               settings["ACTOR_CACHE_SECONDS"])
    _init_jwt(app)
    init_request_logging(app)
    # Transport limits (URL, headers, JSON depth) first; then the token, before any other
    # request hook validates input (401 before 422).
    init_limits(app)
    app.before_request(authenticate_first)
    # Registered early: Flask runs after_request hooks last-registered first, so gzip sees
    # the body after any later hook has changed it.
    init_compression(app)
    init_security(app)  # CORS preflights answered before any other check
    app.before_request(_reject_nul_characters)
    api = init_api(app)
    Migrate(app, _MigrationTarget(), directory=health.MIGRATIONS_DIR)

    app.before_request(_output_crs)
    _docs_assets(app)

    # Every package's blueprints, tasks, templates and hooks, in order (server/modules.py).
    modules.wire(api, app.config)

    from server import cli

    cli.init_cli(app)
    return app
