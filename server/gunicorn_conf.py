"""gunicorn's settings for this app: `gunicorn -c server/gunicorn_conf.py wsgi:app`.

gunicorn answers a few requests itself, before the app sees them: request lines and headers
over its limits, malformed HTTP. Its limits are set at their most generous bounded values,
above the app's own (server/limits.py), so that the app answers long URLs and headers in
the one error shape; and what gunicorn still answers (a request line over 8190 bytes,
broken HTTP) it now answers as JSON in that shape too, instead of its HTML page.
"""

from __future__ import annotations

import json

from gunicorn import util
from werkzeug.http import HTTP_STATUS_CODES

# 8190 is gunicorn's maximum short of 0 (unlimited, which would let a client grow a worker
# without bound); the app refuses URLs over 8000 bytes with its own 414.
limit_request_line = 8190
limit_request_fields = 200  # the app refuses more than 100 with a 431
limit_request_field_size = 8190  # per header line; the app refuses values over 8000
# No access log: the app writes one JSON line per request itself.
accesslog = None


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn.util.write_error, answering in the API's error shape."""
    body = json.dumps({"code": status_int, "status": HTTP_STATUS_CODES.get(status_int, "Error"),
                       "message": mesg or reason}, ensure_ascii=False).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            "Content-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    util.write_nonblock(sock, head + body)


# The workers call util.write_error for every error they answer themselves.
util.write_error = write_json_error
