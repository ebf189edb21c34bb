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

from collections.abc import Callable

from flask import Flask, Response, current_app, request

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
    """Mark a view whose answer holds personal data in clear: `Cache-Control: no-store` on
    every answer of its route, errors included (401, 422…), whichever hook or decorator
    gives them (the header is added after the request, from the mark)."""
    view._no_store = True  # type: ignore[attr-defined]
    return view


def view_of(endpoint: str | None, method: str) -> Callable | None:
    """The function that serves `method` at `endpoint` (a MethodView's method), where
    marks such as @no_store and @login_required's are found."""
    view = current_app.view_functions.get(endpoint) if endpoint else None
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        view = getattr(view_class, method.lower(), None)
        if view is None and method == "HEAD":
            view = getattr(view_class, "get", None)
    return view


def _no_store(response: Response) -> Response:
    if getattr(view_of(request.endpoint, request.method), "_no_store", False):
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"  # HTTP/1.0 caches
    return response


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
    app.after_request(lambda response: _security_headers(_cors(_no_store(response))))
