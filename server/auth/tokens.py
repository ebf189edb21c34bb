"""flask-jwt-extended's JWTManager with a cache of verified access tokens.

Decoding a token cost ~0.3 ms of CPU per request (PyJWT parses it four times and checks
every base64 character in Python), a tenth of a small read. A phone sends the same token
for up to JWT_ACCESS_MINUTES, so the claims of a token whose signature verified are kept,
keyed by the token's exact text. What may change while a token lives is still checked on
every request: expiry (and not-before) here, the session's revocation, the account being
disabled and its roles in server.auth.actor.load_actor, from the database. A token that
fails verification is never cached. `access_claims` serves the cache before flask-jwt-extended
looks at the request at all (server.auth.actor). The key does not change while a process runs
(JWT_SECRET_KEY is read at start).
"""

from __future__ import annotations

import time
from datetime import timedelta

from flask_jwt_extended import JWTManager
from flask_jwt_extended.config import config

CACHE_SIZE = 4096  # tokens; the cache is emptied when full (cheaper than LRU bookkeeping)


class CachingJWTManager(JWTManager):
    def __init__(self, *args, **kwargs) -> None:
        self._verified: dict[tuple, dict] = {}
        super().__init__(*args, **kwargs)

    def _decode_jwt_from_config(self, encoded_token: str, csrf_value=None,
                                allow_expired: bool = False) -> dict:
        key = (encoded_token, csrf_value, allow_expired)
        claims = self._verified.get(key)
        if claims is not None and (allow_expired or _current(claims)):
            return dict(claims)  # a copy: callers may add to it
        self._verified.pop(key, None)
        claims = super()._decode_jwt_from_config(encoded_token, csrf_value, allow_expired)
        if len(self._verified) >= CACHE_SIZE:
            self._verified.clear()
        self._verified[key] = dict(claims)
        return claims

    def access_claims(self, encoded_token: str) -> dict | None:
        """The claims of an access token sent in a header that verified before and is still
        current, or None (then verify it the usual way). Skips flask-jwt-extended's per
        request parsing of the token's header, which costs as much as the decoding."""
        claims = self._verified.get((encoded_token, None, False))
        if claims is not None and claims.get("type") == "access" and _current(claims):
            return claims
        return None


def _current(claims: dict) -> bool:
    """Not expired and already valid, as PyJWT judges it (with the configured leeway)."""
    now, leeway = time.time(), config.leeway
    if isinstance(leeway, timedelta):  # JWT_DECODE_LEEWAY may be either
        leeway = leeway.total_seconds()
    exp, nbf = claims.get("exp"), claims.get("nbf")
    return ((exp is None or now < exp + leeway)
            and (nbf is None or now >= nbf - leeway))


# --- console: the refresh token in an httpOnly cookie (指挥中心工作台) -----------------------
# The console (under /console) keeps its access token in memory only; the refresh token
# lives in a cookie no script can read (HttpOnly), sent only to the console's own auth
# endpoints (Path) and never on a request another site starts (SameSite=Strict). Those
# endpoints also want a header a cross-site form cannot send (CONSOLE_CSRF_HEADER), so a
# forged request fails even in a browser that ignores SameSite. The token itself is the
# same refresh token phones hold: same rotation, reuse detection and revocation.

CONSOLE_COOKIE = "grid_console_refresh"
CONSOLE_COOKIE_PATH = "/auth/console"
CONSOLE_CSRF_HEADER = "X-Requested-With"
CONSOLE_CSRF_VALUE = "grid-console"


def console_cookie(refresh_token: str, max_age: timedelta, secure: bool) -> str:
    """The Set-Cookie value that hands the console its refresh token."""
    from werkzeug.http import dump_cookie

    return dump_cookie(CONSOLE_COOKIE, refresh_token, max_age=int(max_age.total_seconds()),
                       path=CONSOLE_COOKIE_PATH, secure=secure, httponly=True,
                       samesite="Strict")


def console_cookie_cleared(secure: bool) -> str:
    """The Set-Cookie value that makes the browser forget the console's refresh token."""
    from werkzeug.http import dump_cookie

    return dump_cookie(CONSOLE_COOKIE, "", max_age=0, expires=0, path=CONSOLE_COOKIE_PATH,
                       secure=secure, httponly=True, samesite="Strict")
