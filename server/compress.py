"""gzip for JSON and text responses, when the client accepts it.

A full sync page of 2,000 records is 1.34 MB of JSON that gzip at level 1 makes 143 KB for
~6 ms of CPU (bench/README.md, registry_sync): 1.2 MB less for a phone to download per
page. Level 1, the cheapest, because this server is CPU-bound. Bodies under
COMPRESS_MIN_BYTES (0: never compress) are sent as they are: a
small body gains nothing. Files (send_file) and streams are left alone, and so are
binary types (tiles, photos, spreadsheets, which are compressed already or cached by
their ETag). A strong ETag becomes weak on a compressed body (a different byte sequence);
If-Match still reads its version (server.api.expected_version).
"""

from __future__ import annotations

import gzip

from flask import Flask, Response, request

LEVEL = 1
_TYPES = ("application/json", "application/geo+json")


def _compressible(response: Response) -> bool:
    return (response.mimetype in _TYPES or response.mimetype.startswith("text/")) and not (
        response.direct_passthrough or response.is_streamed
        or "Content-Encoding" in response.headers
        or response.status_code < 200 or response.status_code in (204, 206, 304))


def init_compression(app: Flask) -> None:
    minimum = app.config["COMPRESS_MIN_BYTES"]
    if minimum <= 0:
        return

    @app.after_request
    def _gzip(response: Response) -> Response:
        if not _compressible(response) or response.content_length is not None and (
                response.content_length < minimum):
            return response
        data = response.get_data()
        if len(data) < minimum:
            return response
        response.vary.add("Accept-Encoding")
        if not request.accept_encodings["gzip"]:
            return response
        response.set_data(gzip.compress(data, compresslevel=LEVEL, mtime=0))
        response.headers["Content-Encoding"] = "gzip"
        etag, weak = response.get_etag()
        if etag and not weak:
            response.set_etag(etag, weak=True)
        return response
