"""gzip of JSON responses for clients that accept it (server/compress.py)."""

from __future__ import annotations

import gzip
import json


def test_a_large_json_body_is_gzipped_for_a_client_that_accepts_it(client):
    plain = client.get("/api/openapi.json")
    assert plain.status_code == 200 and "Content-Encoding" not in plain.headers
    assert "Accept-Encoding" in plain.headers["Vary"]  # caches must keep both apart

    packed = client.get("/api/openapi.json", headers={"Accept-Encoding": "gzip, deflate"})
    assert packed.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in packed.headers["Vary"]
    assert int(packed.headers["Content-Length"]) == len(packed.data) < len(plain.data) / 4
    assert json.loads(gzip.decompress(packed.data)) == plain.get_json()


def test_a_client_that_refuses_gzip_and_a_small_body_get_it_as_it_is(client):
    refused = client.get("/api/openapi.json", headers={"Accept-Encoding": "gzip;q=0"})
    assert "Content-Encoding" not in refused.headers
    small = client.get("/healthz", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in small.headers and small.get_json() == {"status": "ok"}


def test_a_strong_etag_becomes_weak_on_a_gzipped_body():
    from flask import Flask, jsonify

    from server.compress import init_compression

    app = Flask(__name__)
    app.config["COMPRESS_MIN_BYTES"] = 1024

    @app.get("/etagged")
    def etagged():
        response = jsonify({"filler": "x" * 4000})
        response.set_etag("7")
        return response

    init_compression(app)
    response = app.test_client().get("/etagged", headers={"Accept-Encoding": "gzip"})
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.headers["ETag"] == 'W/"7"'


def test_binary_bodies_and_a_zero_minimum_are_left_as_they_are():
    from flask import Flask, Response, jsonify

    from server.compress import init_compression

    def app_with(minimum: int) -> Flask:
        app = Flask(__name__)
        app.config["COMPRESS_MIN_BYTES"] = minimum

        @app.get("/tile")
        def tile():
            return Response(b"\x1a" * 4000, mimetype="application/vnd.mapbox-vector-tile")

        @app.get("/json")
        def big_json():
            return jsonify({"filler": "x" * 4000})

        init_compression(app)
        return app

    on = app_with(1024).test_client()
    assert on.get("/json", headers={"Accept-Encoding": "gzip"}).headers["Content-Encoding"] \
        == "gzip"  # (the control: this app compresses)
    tile = on.get("/tile", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in tile.headers and tile.data == b"\x1a" * 4000
    off = app_with(0).test_client().get("/json", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in off.headers and len(off.data) > 4000
