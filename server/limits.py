"""Bounds on every request, checked before any view: URL length, header size, JSON depth.

Each answers in the one error shape (414, 431, 400) instead of whatever a lower layer would
do: gunicorn's HTML page for a long request line, a RecursionError (500) from json.loads
or from code walking a body nested thousands of levels deep. gunicorn's own limits
(server/gunicorn_conf.py) sit above these, so that the app is the one that answers.
"""

from __future__ import annotations

from flask import Flask, request

from server.errors import BadRequest, HeadersTooLarge, UriTooLong

# Path and query string, in bytes as sent (percent-encoded). gunicorn reads request lines of
# up to 8190 bytes (its maximum short of "unlimited"): this leaves room for the method and
# the protocol, so that the app, not gunicorn, answers URLs over the limit.
MAX_URL_BYTES = 8000
# One header value, and all of them together. gunicorn's limit_request_field_size is 8190
# per field (name, colon and value).
MAX_HEADER_BYTES = 8000
MAX_HEADERS_TOTAL_BYTES = 32768
MAX_HEADERS = 100
# Deeper than any body of this API (a GeoJSON MultiPolygon in a feature collection is ~7);
# far below where Python's recursion limit (1000) is reached.
MAX_JSON_DEPTH = 64

_ONE_KIND = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _outside_strings(data: bytes) -> bytes:
    """The JSON text without its strings' contents. Escaped backslashes, then escaped
    quotes, are dropped first (outside strings JSON has no backslash), so every quote left
    opens or closes a string: every other piece between quotes is outside. Bytes
    operations only (a regex over many short strings cost as much as parsing)."""
    return b"".join(data.replace(b"\\\\", b"").replace(b'\\"', b"").split(b'"')[::2])


def json_too_deep(data: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when the JSON text nests arrays/objects more than `limit` levels deep, found
    without parsing (a parser is what would overflow): strings dropped, every bracket made
    `[` or `]` (only the depth matters), then the innermost pairs removed a level a pass,
    and a run of more than `limit` opening brackets is an answer at once. Each step is a
    C-speed bytes operation. Malformed text is left to the parser (False)."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False  # nearly every body: not even that many containers
    brackets = _outside_strings(data).translate(_ONE_KIND, _NOT_BRACKETS)
    run = b"[" * (limit + 1)
    for _ in range(limit):  # a depth of d empties it in d passes
        if run in brackets:
            return True
        shorter = brackets.replace(b"[]", b"")
        if shorter == brackets:
            return False  # malformed: the parser says so
        if not shorter:
            return False  # all matched within the limit
        brackets = shorter
    return brackets.replace(b"[]", b"") != brackets  # another level left (or malformed)


def _check_request() -> None:
    # As sent (gunicorn's RAW_URI, werkzeug's REQUEST_URI), else rebuilt
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    uri_bytes = len(raw) if raw else len(request.full_path.encode())
    if uri_bytes > MAX_URL_BYTES:
        raise UriTooLong(f"The URL has {uri_bytes} bytes; at most {MAX_URL_BYTES} are "
                         "accepted (send long filters in a request body or in several pages)")
    headers = request.headers
    if len(headers) > MAX_HEADERS:
        raise HeadersTooLarge(f"The request has {len(headers)} header fields; at most "
                              f"{MAX_HEADERS} are accepted")
    total = 0
    for name, value in headers.items():
        size = len(name) + len(value)
        if size > MAX_HEADER_BYTES:
            raise HeadersTooLarge(f"The header {name[:64]} has {size} bytes; at most "
                                  f"{MAX_HEADER_BYTES} are accepted")
        total += size
    if total > MAX_HEADERS_TOTAL_BYTES:
        raise HeadersTooLarge(f"The headers have {total} bytes; at most "
                              f"{MAX_HEADERS_TOTAL_BYTES} are accepted")
    if request.is_json and request.content_length != 0 and json_too_deep(
            request.get_data(cache=True)):
        raise BadRequest(f"JSON nested too deeply (more than {MAX_JSON_DEPTH} levels)")


def init_limits(app: Flask) -> None:
    """Register the checks; call before any other before_request hook that reads the body."""
    app.before_request(_check_request)
