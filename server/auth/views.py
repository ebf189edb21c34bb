"""Login, tokens, one's own account, and user administration."""

from __future__ import annotations

from flask import current_app, g, request
from flask.views import MethodView

from server import db
from server.api import Blueprint, etag, expected_version, statuses
from server.auth import schemas, service, tokens
from server.auth.actor import current_actor, login_required
from server.errors import Forbidden, Unauthorized

blp = Blueprint("auth", __name__, url_prefix="/auth", description="Login and tokens (登录)")
users_blp = Blueprint("users", __name__, url_prefix="/users", description="Accounts (账号管理)")
me_blp = Blueprint("me", __name__, url_prefix="/me", description="One's own account")


@blp.before_app_request
def _forget_earlier_actor() -> None:
    """The actor belongs to one request. `g` lives as long as the app context, which can
    span several requests (tests, scripts): an anonymous login must never run as whoever
    called before it."""
    g.pop("actor", None)


@blp.route("/login", methods=["POST"])
@blp.arguments(schemas.LoginSchema)
@blp.response(200, schemas.TokenSchema)
@statuses(401, 423, 429)
def login(data):
    """Log in with a username or phone number; returns an access and a refresh token."""
    with db.unit_of_work() as s:
        return service.login(s, current_actor(), data["login"], data["password"],
                             request.user_agent.string)


@blp.route("/refresh", methods=["POST"])
@blp.arguments(schemas.RefreshSchema)
@blp.response(200, schemas.TokenSchema)
@statuses(401)
def refresh(data):
    """Trade a refresh token for a new pair. Each refresh token works once."""
    with db.unit_of_work() as s:
        return service.refresh(s, current_actor(), data["refresh_token"])


@blp.route("/logout", methods=["POST"])
@blp.response(204)
@login_required
def logout():
    """End this session on this device."""
    with db.unit_of_work() as s:
        service.logout(s, current_actor())


@blp.route("/password", methods=["POST"])
@blp.arguments(schemas.ChangePasswordSchema)
@blp.response(204)
@login_required
def change_password(data):
    """Change one's own password; sessions on other devices end."""
    with db.unit_of_work() as s:
        service.change_password(s, current_actor(), data["current_password"],
                                data["new_password"])


@blp.route("/verification-codes", methods=["POST"])
@blp.arguments(schemas.VerificationCodeRequestSchema)
@blp.response(202)
@statuses(429)
def request_code(data):
    """Send a registration code to a phone (in development the code is logged)."""
    with db.unit_of_work() as s:
        service.request_verification_code(s, current_actor(), data["phone"])


@blp.route("/register", methods=["POST"])
@blp.arguments(schemas.RegisterSchema)
@blp.response(201, schemas.TokenSchema)
@statuses(409, 429)
def register(data):
    """A resident (居民) signs up with a phone number and the code sent to it."""
    with db.unit_of_work() as s:
        return service.register_resident(s, current_actor(), data)


@me_blp.route("")
@me_blp.response(200, schemas.MeSchema)
@login_required
def me():
    """One's own account, roles and permissions."""
    actor = current_actor()
    user = service.get_user(db.session(), actor, actor.user_id)
    user.permissions = sorted(actor.permissions)
    return user


@users_blp.route("")
class Users(MethodView):
    @users_blp.arguments(schemas.UserQuerySchema, location="query")
    @users_blp.response(200, schemas.UserSchema(many=True))
    @users_blp.paginate()
    @login_required
    def get(self, filters, pagination_parameters):
        """List accounts (administrators)."""
        return service.list_users(db.session(), current_actor(), filters, pagination_parameters)

    @users_blp.arguments(schemas.UserCreateSchema)
    @users_blp.response(201, schemas.UserSchema)
    @login_required
    def post(self, data):
        """Create an account with roles (administrators)."""
        with db.unit_of_work() as s:
            return service.create_user(s, current_actor(), data)


@users_blp.route("/<int:user_id>")
class UserById(MethodView):
    @users_blp.response(200, schemas.UserSchema)
    @login_required
    def get(self, user_id):
        user = service.get_user(db.session(), current_actor(), user_id)
        return user, 200, etag(user.version)

    @users_blp.arguments(schemas.UserUpdateSchema)
    @users_blp.response(200, schemas.UserSchema)
    @login_required
    def patch(self, data, user_id):
        """Rename, disable (ends every session) or change roles. Needs the version."""
        version = expected_version(data)
        with db.unit_of_work() as s:
            user = service.update_user(s, current_actor(), user_id, data, version)
        return user, 200, etag(user.version)


# --- console: login and refresh with the refresh token in an httpOnly cookie ---------------


class ConsoleTokenSchema(schemas.TokenSchema):
    """The console's answer: the access token (kept in memory by the page); the refresh
    token is in the `grid_console_refresh` cookie instead (HttpOnly, SameSite=Strict,
    Path=/auth/console)."""

    class Meta:
        exclude = ("refresh_token",)


_CSRF_DOC = {"parameters": [{
    "in": "header", "name": tokens.CONSOLE_CSRF_HEADER, "required": True,
    "schema": {"type": "string", "enum": [tokens.CONSOLE_CSRF_VALUE]},
    "description": "Sent by the console's own script; a cross-site form cannot send it "
                   "(CSRF guard, with SameSite=Strict)"}]}


def _from_console() -> None:
    if request.headers.get(tokens.CONSOLE_CSRF_HEADER) != tokens.CONSOLE_CSRF_VALUE:
        raise Forbidden(f"Send {tokens.CONSOLE_CSRF_HEADER}: {tokens.CONSOLE_CSRF_VALUE}")


def _with_cookie(pair) -> tuple:
    cookie = tokens.console_cookie(pair.refresh_token,
                                   current_app.config["JWT_REFRESH_TOKEN_EXPIRES"],
                                   request.is_secure)
    return pair, 200, {"Set-Cookie": cookie, "Cache-Control": "no-store"}


@blp.route("/console/login", methods=["POST"])
@blp.arguments(schemas.LoginSchema)
@blp.response(200, ConsoleTokenSchema)
@blp.doc(**_CSRF_DOC)
@statuses(401, 403, 423, 429)
def console_login(data):
    """The console's login (指挥中心工作台): as /auth/login, but the refresh token is set
    in an httpOnly, SameSite=Strict cookie scoped to /auth/console, never in the body."""
    _from_console()
    with db.unit_of_work() as s:
        pair = service.login(s, current_actor(), data["login"], data["password"],
                             request.user_agent.string)
    return _with_cookie(pair)


@blp.route("/console/refresh", methods=["POST"])
@blp.response(200, ConsoleTokenSchema)
@blp.doc(**_CSRF_DOC)
@statuses(401, 403)
def console_refresh():
    """A new access token for the console (after a page reload, or when it expires) from
    the cookie's refresh token, which is rotated (each works once, as /auth/refresh)."""
    _from_console()
    refresh_token = request.cookies.get(tokens.CONSOLE_COOKIE)
    if not refresh_token:
        raise Unauthorized("Log in first (no console session)")
    with db.unit_of_work() as s:
        pair = service.refresh(s, current_actor(), refresh_token)
    return _with_cookie(pair)


@blp.route("/console/logout", methods=["POST"])
@blp.response(204)
@blp.doc(**_CSRF_DOC)
@statuses(403)
@login_required
def console_logout():
    """End the console's session and make the browser forget its cookie."""
    _from_console()
    with db.unit_of_work() as s:
        service.logout(s, current_actor())
    return "", 204, {"Set-Cookie": tokens.console_cookie_cleared(request.is_secure)}
