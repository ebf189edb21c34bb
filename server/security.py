"""What every response says to browsers: security headers, CORS, and no-store for personal
data in clear.

- Every response: `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`,
  `Referrer-Policy: no-referrer`, and a Content-Security-Policy: for pages (HTML, and the
  print map's SVG) one without inline script — `script-src 'self'`; the map page and the
  API docs load their scripts from files — and for everything else `default-src 'none'`.
  Both forbid framing (`frame-ancestors 'none'`).
- CORS: a GET or HEAD without credentials answers any origin (`*`): it is what anyone gets
  without a browser too (Open311 reads, the public areas layer and card, 401s). Anything
  carrying a token, and any write, only for the origins of CORS_ORIGINS (none by default).
  Preflights (OPTIONS) are answered here, for every path.
- `@no_store` marks the views whose answers hold personal data in clear (an unmasked ID
  number or phone, an export): `Cache-Control: no-store`, so that no browser, proxy or
  phone cache keeps a copy.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, after_this_request, current_app, request

PAGE_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    # Swagger UI and MapLibre set style attributes from script; no <style> of ours is inline.
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "worker-src 'self' blob:",  # MapLibre starts its workers from a blob: URL
    "child-src 'self' blob:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
API_POLICY = "default-src 'none'; frame-ancestors 'none'"
_PAGE_TYPES = ("text/html", "image/svg+xml")

_SAFE_METHODS = ("GET", "HEAD")
_ALL_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
# Response headers a browser app may read (CORS hides all but a few by default).
_EXPOSED = ("ETag, X-Pagination, X-Request-ID, Retry-After, Location, Content-Disposition, "
            "WWW-Authenticate, Allow")
PREFLIGHT_MAX_AGE_S = 600


def no_store(view: Callable) -> Callable:
    """Mark a view whose answer holds personal data in clear: `Cache-Control: no-store`.
    Put it directly below the blueprint's `route`, so that every answer of the route
    carries it, errors included (401, 422…), whichever decorator answers them."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        @after_this_request
        def _no_store(response: Response) -> Response:
            response.headers["Cache-Control"] = "no-store"
            response.headers["Pragma"] = "no-cache"  # HTTP/1.0 caches
            return response

        return view(*args, **kwargs)

    return wrapper


def _security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    page = response.mimetype in _PAGE_TYPES
    headers.setdefault("Content-Security-Policy", PAGE_POLICY if page else API_POLICY)
    return response


def _anonymous_read() -> bool:
    return request.method in _SAFE_METHODS and "Authorization" not in request.headers


def _origins() -> tuple[str, ...]:
    return current_app.config["CORS_ORIGINS"]


def _is_preflight() -> bool:
    return (request.method == "OPTIONS" and "Origin" in request.headers
            and "Access-Control-Request-Method" in request.headers)


def _preflight() -> Response | None:
    """Answer a CORS preflight: every method and header for a configured origin; for any
    other origin, a GET or HEAD that sends no token."""
    if not _is_preflight():
        return None
    origin = request.headers["Origin"]
    method = request.headers["Access-Control-Request-Method"]
    response = Response(status=204)
    response.vary.add("Origin")
    asked = request.headers.get("Access-Control-Request-Headers", "")
    asked_names = {h.strip().lower() for h in asked.split(",") if h.strip()}
    if origin in _origins():
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = _ALL_METHODS
    elif method.upper() in _SAFE_METHODS and "authorization" not in asked_names:
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Allow-Methods"] = "GET, HEAD"
    else:
        return response  # no CORS headers: the browser refuses the request
    if asked:
        response.headers["Access-Control-Allow-Headers"] = asked
    response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_S)
    return response


def _cors(response: Response) -> Response:
    origin = request.headers.get("Origin")
    if not origin or _is_preflight():  # answered whole by _preflight
        return response
    response.vary.add("Origin")
    if origin in _origins():
        response.headers["Access-Control-Allow-Origin"] = origin
    elif _anonymous_read():
        response.headers["Access-Control-Allow-Origin"] = "*"
    else:
        return response
    response.headers["Access-Control-Expose-Headers"] = _EXPOSED
    return response


def init_security(app: Flask) -> None:
    app.before_request(_preflight)
    app.after_request(lambda response: _security_headers(_cors(response)))
