"""The console's page and its built assets (Vue 3, Element Plus, ECharts, vendored and
built from console/frontend into console/static; no JavaScript build at run time).

The page is plain HTML that loads its scripts from files: the app-wide Content-Security-
Policy for pages (server/security.py, `script-src 'self'`, no inline script, no eval)
applies. Assets carry a content hash in their names, so they may be cached for a year;
the page itself is revalidated each time so that a deploy is seen at once."""

from __future__ import annotations

from pathlib import Path

from flask import request, send_from_directory

from server.api import Blueprint

STATIC = Path(__file__).parent / "static"
ASSET_MAX_AGE_S = 365 * 24 * 3600


class _PageBlueprint(Blueprint):
    """Pages and assets, kept out of the OpenAPI document."""

    def register_views_in_doc(self, *args, **kwargs) -> None:
        return None

    def get_send_file_max_age(self, filename: str | None) -> int | None:
        return ASSET_MAX_AGE_S  # hashed names: a new build is a new URL

    def send_static_file(self, filename: str):
        """The build's .gz of the asset when the browser takes gzip (files are not
        compressed on the fly: server/compress.py leaves send_file alone)."""
        packed = STATIC / "assets" / f"{filename}.gz"
        if "gzip" not in request.accept_encodings or not packed.is_file():
            response = super().send_static_file(filename)
        else:
            response = send_from_directory(STATIC / "assets", f"{filename}.gz",
                                           max_age=ASSET_MAX_AGE_S,
                                           mimetype=_mimetype(filename))
            response.headers["Content-Encoding"] = "gzip"
        response.vary.add("Accept-Encoding")
        return response


def _mimetype(filename: str) -> str:
    return "text/css" if filename.endswith(".css") else "text/javascript"


blp = _PageBlueprint("console", __name__, url_prefix="/console",
                     description="The console (指挥中心工作台)",
                     static_folder=str(STATIC / "assets"), static_url_path="/assets")
blueprints = [blp]


@blp.route("")
@blp.route("/")
def console_page():
    """指挥中心工作台: one page; the screens are chosen by the URL's #fragment."""
    return send_from_directory(STATIC, "index.html", max_age=0)
