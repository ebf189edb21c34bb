"""gzip for JSON and text responses, when the client accepts it.

A full sync page is ~1.4 MB of JSON (2,000 records) that gzip at level 1 makes ~150 KB
(9.6x) for ~5 ms of CPU per MB: on a phone's 3G link that is seconds saved per page.
Level 1: on this CPU-bound server the higher levels cost 2-6x the time for 10-25 %
fewer bytes. Bodies under COMPRESS_MIN_BYTES (0: never compress) are sent as they are: a
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
