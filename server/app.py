"""The application factory."""

from __future__ import annotations

import importlib
import logging

from flask import Flask, jsonify, send_from_directory
from flask_jwt_extended import JWTManager
from flask_migrate import Migrate
from marshmallow import ValidationError
from swagger_ui_bundle import swagger_ui_path

from geo.fields import set_output_crs
from server import audit, db, health, pii
from server import config as config_module
from server.api import error_payload, init_api
from server.auth import service as auth_service
from server.auth import views as auth_views
from server.errors import Invalid
from server.logs import configure_logging, init_request_logging

log = logging.getLogger("server.app")


def _jwt_error(message: str):
    body = error_payload(401, "Unauthorized", message)
    return jsonify(body), 401, {"WWW-Authenticate": "Bearer"}


def _init_jwt(app: Flask) -> None:
    jwt = JWTManager(app)
    jwt.unauthorized_loader(lambda reason: _jwt_error(f"Log in first ({reason})"))
    jwt.invalid_token_loader(lambda reason: _jwt_error(f"Invalid token ({reason})"))
    jwt.expired_token_loader(lambda header, payload: _jwt_error("The token has expired"))
    jwt.revoked_token_loader(lambda header, payload: _jwt_error("The token was revoked"))
    jwt.needs_fresh_token_loader(lambda header, payload: _jwt_error("A fresh login is needed"))
    jwt.user_lookup_error_loader(lambda header, payload: _jwt_error("Unknown user"))


class _MigrationTarget:
    """What Flask-Migrate wants as `db`: just the metadata (we do not use Flask-SQLAlchemy)."""

    metadata = db.Base.metadata


def create_app(config: dict | None = None) -> Flask:
    """Build the app. `config` overrides the environment (tests pass their database)."""
    settings = config_module.load_config(config)
    problems = config_module.check_production(settings)
    if problems:
        raise RuntimeError("Refusing to start in production: " + "; ".join(problems))
    configure_logging(settings["LOG_LEVEL"])

    app = Flask(__name__)
    app.config.update(settings)
    app.json.ensure_ascii = False  # Chinese names as they are, not \\u escapes
    pii.configure(settings["PII_KEYS"], settings["BLIND_INDEX_KEY"])
    auth_service.configure_passwords(
        settings["ARGON2_TIME_COST"], settings["ARGON2_MEMORY_KIB"], settings["ARGON2_PARALLELISM"]
    )
    db.init_db(app)
    _init_jwt(app)
    init_request_logging(app)
    api = init_api(app)
    Migrate(app, _MigrationTarget(), directory=health.MIGRATIONS_DIR)

    @app.before_request
    def _output_crs() -> None:
        """?crs=gcj02|bd09 on any request: points and geometries answer in that system."""
        from flask import request

        try:
            set_output_crs(request.args.get("crs"))
        except ValidationError as exc:
            raise Invalid({"query": exc.messages}) from None

    @app.route("/api/docs/assets/<path:filename>")
    def swagger_assets(filename: str):
        """Swagger UI from the swagger-ui-bundle package: the docs work offline."""
        return send_from_directory(str(swagger_ui_path), filename, max_age=86400)

    for blp in (health.blp, auth_views.blp, auth_views.me_blp, auth_views.users_blp, audit.blp):
        api.register_blueprint(blp)
    for module in settings["INSTALLED_MODULES"]:
        importlib.import_module(f"{module}.models")
        views = importlib.import_module(f"{module}.views")
        for blp in views.blueprints:
            api.register_blueprint(blp)

    from server import cli

    cli.init_cli(app)
    return app
