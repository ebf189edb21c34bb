"""Photos and attachments through the HTTP API: type by content, metadata (GPS) stripped,
thumbnails, size limits, de-duplication, client_uuid replays, and access that follows the
record an attachment is linked to (server.storage.service.object_access)."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from PIL import ExifTags, Image, PngImagePlugin

from server.audit import AuditEntry
from server.errors import NotFound
from server.storage import blobs, images, service
from server.storage.models import Attachment
from tests.conftest import assert_error_shape

GPS_IFD = ExifTags.IFD.GPSInfo
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description '
       b'exif:GPSLatitude="30,3.0N" exif:GPSLongitude="119,57.6E"/></rdf:RDF></x:xmpmeta>')


def _exif_with_gps(orientation: int | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "PhoneCo"
    exif[ExifTags.Base.Model] = "Snapper 9"
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    gps = exif.get_ifd(GPS_IFD)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (30.0, 3.0, 0.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (119.0, 57.0, 36.0)
    return exif


def _picture(size=(1200, 800), mode="RGB", seed: int = 0) -> Image.Image:
    """A picture whose left half is red and right half blue (to see rotations)."""
    red = (200, 30 + 20 * seed, 30)
    img = Image.new(mode, size, red if mode == "RGB" else (*red, 255))
    img.paste((20, 40, 220) if mode == "RGB" else (20, 40, 220, 128),
              (size[0] // 2, 0, size[0], size[1]))
    return img


def _jpeg_with_gps(size=(1200, 800), orientation: int | None = 6, seed: int = 0) -> bytes:
    out = io.BytesIO()
    _picture(size, seed=seed).save(out, "JPEG", exif=_exif_with_gps(orientation),
                                   comment=b"taken at home", xmp=XMP, quality=90)
    data = out.getvalue()
    sent = Image.open(io.BytesIO(data))
    assert dict(sent.getexif().get_ifd(GPS_IFD)), "the fixture must carry GPS"
    return data


def _encoded(fmt: str, **options) -> bytes:
    out = io.BytesIO()
    _picture((300, 200), mode="RGBA" if fmt == "PNG" else "RGB").save(out, fmt, **options)
    return out.getvalue()


def _upload(client, headers, data: bytes, name="photo.jpg", content_type="image/jpeg",
            **form):
    body = {"file": (io.BytesIO(data), name, content_type),
            **{k: str(v) for k, v in form.items()}}
    return client.post("/attachments", headers=headers, data=body,
                       content_type="multipart/form-data")


@pytest.fixture
def worker(make_user, auth_headers):
    user = make_user("grid_worker")
    return user, auth_headers(user=user)


@pytest.fixture
def other(make_user, auth_headers):
    user = make_user("grid_worker")
    return user, auth_headers(user=user)


@pytest.fixture
def things(monkeypatch):
    """A test object type: `grants[(user_id, thing_id)]` says who may see which thing."""
    grants: set[tuple[int, int]] = set()

    def check(s, actor, thing_id):
        if (actor.user_id, thing_id) not in grants:
            raise NotFound("No such thing")

    monkeypatch.setitem(service.object_access, "thing", check)
    return grants


def _blob(app, db_session, attachment_id: int, thumbnail: bool = False) -> bytes:
    row = db_session.get(Attachment, attachment_id)
    key = row.thumbnail_key if thumbnail else row.storage_key
    return (Path(app.config["STORAGE_DIR"]) / key).read_bytes()


def _assert_no_metadata(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    assert len(img.getexif()) == 0
    assert not dict(img.getexif().get_ifd(GPS_IFD))
    for key in ("exif", "xmp", "comment", "XML:com.adobe.xmp"):
        assert key not in img.info, key
    for marker in (b"Exif\x00\x00", b"GPSLatitude", b"taken at home", b"PhoneCo", b"GPS secret"):
        assert marker not in data, marker
    return img


# --- what is stored --------------------------------------------------------------------------


def test_gps_and_other_metadata_are_stripped_and_orientation_applied(app, client, db_session,
                                                                     worker):
    _, headers = worker
    response = _upload(client, headers, _jpeg_with_gps(orientation=6))
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert (body["content_type"], body["original_format"]) == ("image/jpeg", "JPEG")
    # Orientation 6 (rotate 90° clockwise) applied: 1200×800 becomes 800×1200.
    assert (body["width"], body["height"]) == (800, 1200)

    served = client.get(body["url"], headers=headers)
    assert served.status_code == 200
    assert served.mimetype == "image/jpeg"
    assert served.data == _blob(app, db_session, body["id"])  # what is on disk is served
    img = _assert_no_metadata(served.data)
    assert img.format == "JPEG" and img.size == (800, 1200)
    red, blue = img.convert("RGB").getpixel((400, 100)), img.convert("RGB").getpixel((400, 1100))
    assert red[0] > 150 > red[2] and blue[2] > 150 > blue[0]  # the red half is on top now

    thumb = client.get(body["thumbnail_url"], headers=headers)
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"
    small = _assert_no_metadata(thumb.data)
    assert small.format == "JPEG" and max(small.size) == 320 and small.size[1] == 320


def test_served_with_etag_and_private_cache(client, worker):
    _, headers = worker
    body = _upload(client, headers, _jpeg_with_gps(orientation=None)).get_json()
    served = client.get(body["url"], headers=headers)
    assert served.headers["ETag"] == f'"{body["sha256"]}"'
    cache = served.headers["Cache-Control"]
    assert "private" in cache and "public" not in cache and "max-age" in cache
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    again = client.get(body["url"], headers={**headers, "If-None-Match": f'"{body["sha256"]}"'})
    assert again.status_code == 304 and not again.data
    thumb = client.get(body["thumbnail_url"], headers=headers)
    assert thumb.headers["ETag"] and thumb.headers["ETag"] != served.headers["ETag"]
    assert "private" in thumb.headers["Cache-Control"]


@pytest.mark.parametrize(("fmt", "options", "content_type"), [
    ("PNG", {"pnginfo": PngImagePlugin.PngInfo()}, "image/png"),
    ("WEBP", {"quality": 80}, "image/webp"),
])
def test_png_and_webp_are_accepted(client, worker, fmt, options, content_type):
    _, headers = worker
    if fmt == "PNG":
        options["pnginfo"].add_text("Comment", "GPS secret")
        options["exif"] = _exif_with_gps()
    else:
        options["exif"] = _exif_with_gps().tobytes()
    response = _upload(client, headers, _encoded(fmt, **options), name=f"x.{fmt.lower()}",
                       content_type=content_type)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert (body["content_type"], body["original_format"]) == (content_type, fmt)
    assert (body["width"], body["height"]) == (300, 200)
    served = client.get(body["url"], headers=headers)
    assert served.mimetype == content_type
    img = _assert_no_metadata(served.data)
    assert img.format == fmt
    if fmt == "PNG":
        assert img.mode == "RGBA"  # transparency kept
    thumb = client.get(body["thumbnail_url"], headers=headers)
    assert Image.open(io.BytesIO(thumb.data)).format == "JPEG"


def test_type_is_decided_by_content_not_by_name_or_content_type(client, worker):
    _, headers = worker
    response = _upload(client, headers, _jpeg_with_gps(orientation=None), name="photo.png",
                       content_type="image/png")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert (body["content_type"], body["original_format"]) == ("image/jpeg", "JPEG")


@pytest.mark.parametrize(("data", "name"), [
    (b"Dear neighbour, this is a letter and not a photo.\n", "photo.jpg"),
    (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "photo.gif"),
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "photo.jpeg"),
])
def test_anything_but_the_accepted_images_is_a_415(client, worker, data, name):
    _, headers = worker
    body = assert_error_shape(_upload(client, headers, data, name=name), 415)
    assert "JPEG, PNG, WebP or HEIC" in body["message"]


def test_a_truncated_image_is_a_422(client, worker):
    _, headers = worker
    data = _jpeg_with_gps(orientation=None)
    body = assert_error_shape(_upload(client, headers, data[: len(data) // 3]), 422)
    assert "cannot be decoded" in body["message"] and "file" in body["errors"]["form"]


def test_heic_is_accepted_and_stored_as_jpeg_without_metadata(client, worker):
    pillow_heif = pytest.importorskip("pillow_heif")
    assert images.HEIF_SUPPORTED
    _, headers = worker
    out = io.BytesIO()
    heif = pillow_heif.from_pillow(_picture((640, 480)))
    heif.save(out, quality=80, exif=_exif_with_gps().tobytes(), xmp=XMP)
    sent = out.getvalue()
    assert sent[4:12] == b"ftypheic"
    assert dict(Image.open(io.BytesIO(sent)).getexif().get_ifd(GPS_IFD))
    response = _upload(client, headers, sent, name="IMG_0001.HEIC", content_type="image/heic")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert (body["content_type"], body["original_format"]) == ("image/jpeg", "HEIF")
    assert (body["width"], body["height"]) == (640, 480)
    served = client.get(body["url"], headers=headers)
    assert served.mimetype == "image/jpeg"
    assert _assert_no_metadata(served.data).format == "JPEG"


# --- limits ----------------------------------------------------------------------------------


def test_a_photo_over_photo_max_bytes_is_a_413(app, client, worker, monkeypatch):
    _, headers = worker
    data = _jpeg_with_gps()
    monkeypatch.setitem(app.config, "PHOTO_MAX_BYTES", len(data) - 1)
    body = assert_error_shape(_upload(client, headers, data), 413)
    assert str(len(data) - 1) in body["message"]
    monkeypatch.setitem(app.config, "PHOTO_MAX_BYTES", len(data))
    assert _upload(client, headers, data).status_code == 201


def test_a_body_over_max_content_length_is_a_413(app, client, worker, monkeypatch):
    _, headers = worker
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 4096)
    assert_error_shape(_upload(client, headers, _jpeg_with_gps()), 413)


def test_too_many_pixels_is_a_413(client, worker, monkeypatch):
    _, headers = worker
    monkeypatch.setattr(images, "MAX_PIXELS", 1000 * 700)
    body = assert_error_shape(_upload(client, headers, _jpeg_with_gps()), 413)
    assert "1200×800" in body["message"]


def test_upload_needs_a_login_and_a_file(client, worker):
    assert_error_shape(_upload(client, {}, _jpeg_with_gps()), 401)
    _, headers = worker
    response = client.post("/attachments", headers=headers, data={"file": "not a file part"},
                           content_type="multipart/form-data")
    body = assert_error_shape(response, 422)
    assert "file" in body["errors"]["form"]
    body = assert_error_shape(_upload(client, headers, _jpeg_with_gps(), object_type="thing"),
                              422)
    assert "object_id" in body["errors"]["form"]


# --- de-duplication and replays ---------------------------------------------------------------


def test_the_same_file_twice_is_one_attachment_and_one_blob(app, client, worker, other):
    data = _jpeg_with_gps(seed=7)
    first = _upload(client, worker[1], data)
    assert first.status_code == 201
    second = _upload(client, worker[1], data, name="again.jpg")
    assert second.status_code == 200
    assert second.get_json()["id"] == first.get_json()["id"]
    # Another uploader gets an attachment of their own, on the same stored bytes.
    theirs = _upload(client, other[1], data)
    assert theirs.status_code == 201
    assert theirs.get_json()["id"] != first.get_json()["id"]
    sha = first.get_json()["sha256"]
    assert theirs.get_json()["sha256"] == sha
    blobs = [p for p in Path(app.config["STORAGE_DIR"]).rglob(f"{sha}.*")]
    assert len(blobs) == 1 and blobs[0].parent.parts[-2:] == (sha[:2], sha[2:4])


def test_client_uuid_replay_returns_the_original_and_other_content_is_a_409(client, worker):
    _, headers = worker
    key = str(uuid.uuid4())
    first = _upload(client, headers, _jpeg_with_gps(seed=1), client_uuid=key)
    assert first.status_code == 201
    replay = _upload(client, headers, _jpeg_with_gps(seed=1), client_uuid=key)
    assert replay.status_code == 200  # the one replay rule (server.idempotency)
    assert replay.headers["Idempotent-Replay"] == "true"
    assert replay.get_json() == first.get_json()
    body = assert_error_shape(_upload(client, headers, _jpeg_with_gps(seed=2), client_uuid=key),
                              409)
    assert body["existing"]["id"] == str(first.get_json()["id"])


def test_a_failed_upload_does_not_use_up_its_client_uuid(client, worker):
    _, headers = worker
    key = str(uuid.uuid4())
    assert_error_shape(_upload(client, headers, b"not an image", client_uuid=key), 415)
    assert _upload(client, headers, _jpeg_with_gps(), client_uuid=key).status_code == 201


# --- access ----------------------------------------------------------------------------------


def test_an_unlinked_upload_is_visible_to_its_uploader_only(client, worker, other, things):
    _, headers = worker
    body = _upload(client, headers, _jpeg_with_gps()).get_json()
    assert body["object_type"] is None and body["linked_at"] is None
    assert client.get(body["url"], headers=headers).status_code == 200
    for url in (body["url"], body["thumbnail_url"]):
        assert_error_shape(client.get(url, headers=other[1]), 404)
    things.add((other[0].id, 1))
    response = client.post(f"/attachments/{body['id']}/link", headers=other[1],
                           json={"object_type": "thing", "object_id": 1})
    assert_error_shape(response, 404)
    assert_error_shape(client.get("/attachments/999999999", headers=headers), 404)


def test_access_follows_the_record_through_the_hook(client, db_session, worker, other, things):
    user, headers = worker
    things.update({(user.id, 1), (user.id, 2), (other[0].id, 1)})
    response = _upload(client, headers, _jpeg_with_gps(), object_type="thing", object_id=1)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert (body["object_type"], body["object_id"]) == ("thing", 1) and body["linked_at"]

    # Whoever may see thing 1 may see its photo, uploader or not.
    assert client.get(body["url"], headers=other[1]).status_code == 200
    listed = client.get("/attachments?object_type=thing&object_id=1", headers=other[1])
    assert [a["id"] for a in listed.get_json()] == [body["id"]]
    # Once the checker refuses (NotFound), the photo does not exist for them either.
    things.discard((other[0].id, 1))
    for url in (body["url"], body["thumbnail_url"]):
        error = assert_error_shape(client.get(url, headers=other[1]), 404)
        assert error["message"] == "No such attachment"  # nothing said about the record
    assert_error_shape(client.get("/attachments?object_type=thing&object_id=1",
                                  headers=other[1]), 404)
    # A type no module registers (any more) hides the attachment too.
    db_session.execute(sa.update(Attachment).where(Attachment.id == body["id"])
                       .values(object_type="gone"))
    assert_error_shape(client.get(body["url"], headers=headers), 404)


def test_uploading_for_a_record_one_cannot_see_is_refused(client, worker, things):
    _, headers = worker
    body = assert_error_shape(
        _upload(client, headers, _jpeg_with_gps(), object_type="thing", object_id=5), 404)
    assert body["message"] == "No such thing"
    body = assert_error_shape(
        _upload(client, headers, _jpeg_with_gps(), object_type="nosuch", object_id=5), 422)
    assert "thing" in body["errors"]["form"]["object_type"][0]


def test_link_checks_the_target_and_is_audited(client, db_session, worker, other, things):
    user, headers = worker
    things.update({(user.id, 1), (user.id, 2)})
    body = _upload(client, headers, _jpeg_with_gps()).get_json()
    link = f"/attachments/{body['id']}/link"

    assert_error_shape(client.post(link, headers=headers,
                                   json={"object_type": "thing", "object_id": 3}), 404)
    error = assert_error_shape(client.post(link, headers=headers,
                                           json={"object_type": "nosuch", "object_id": 1}), 422)
    assert "object_type" in error["errors"]["json"]
    linked = client.post(link, headers=headers, json={"object_type": "thing", "object_id": 1})
    assert linked.status_code == 200, linked.get_json()
    assert (linked.get_json()["object_type"], linked.get_json()["object_id"]) == ("thing", 1)
    again = client.post(link, headers=headers, json={"object_type": "thing", "object_id": 1})
    assert again.status_code == 200
    moved = client.post(link, headers=headers, json={"object_type": "thing", "object_id": 2})
    assert assert_error_shape(moved, 409)["existing"] == {"object_type": "thing", "id": 1}
    # Linked to a thing the other user cannot see: still hidden from them.
    assert_error_shape(client.get(body["url"], headers=other[1]), 404)

    actions = db_session.scalars(
        sa.select(AuditEntry.action).where(AuditEntry.object_type == "attachment",
                                           AuditEntry.object_id == str(body["id"]))
        .order_by(AuditEntry.id)).all()
    assert actions == ["attachment_uploaded", "attachment_linked"]


def test_uploading_again_for_a_record_links_the_unlinked_copy(client, worker, things):
    user, headers = worker
    things.add((user.id, 1))
    data = _jpeg_with_gps(seed=3)
    unlinked = _upload(client, headers, data).get_json()
    linked = _upload(client, headers, data, object_type="thing", object_id=1)
    assert linked.status_code == 200
    assert linked.get_json()["id"] == unlinked["id"]
    assert linked.get_json()["object_type"] == "thing"


# --- the blob store ----------------------------------------------------------------------------


def test_local_blob_store_put_open_delete(tmp_path):
    store = blobs.LocalBlobStore(tmp_path)
    key = blobs.blob_key("ab" * 32, "jpg")
    assert key.startswith("ab/ab/")
    store.put(key, b"one")
    store.put(key, b"one")  # content-addressed: the second put is a no-op
    with store.open(key) as fh:
        assert fh.read() == b"one"
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [f"{'ab' * 32}.jpg"]
    store.delete(key)
    store.delete(key)
    with pytest.raises(FileNotFoundError):
        store.open(key)
    with pytest.raises(ValueError):
        store.put("../../etc/passwd", b"x")


def test_no_attachment_operation_answers_for_a_record_out_of_scope(client, worker, other,
                                                                    things):
    """Read, thumbnail, list and link of an attachment whose record (or whose link target)
    the caller cannot see: 404, and nothing of the attachment in the answer."""
    user, headers = worker
    other_user, other_headers = other
    things.update({(user.id, 1), (other_user.id, 2)})
    theirs = _upload(client, headers, _jpeg_with_gps(seed=5), object_type="thing",
                     object_id=1).get_json()
    mine = _upload(client, other_headers, _jpeg_with_gps(seed=6), object_type="thing",
                   object_id=2).get_json()
    unlinked = _upload(client, other_headers, _jpeg_with_gps(seed=7)).get_json()

    def assert_hidden(response):
        body = assert_error_shape(response, 404)
        text = response.get_data(as_text=True)
        for attachment in (theirs, mine, unlinked):
            assert attachment["sha256"] not in text
        assert "existing" not in body and "uploaded_by" not in body

    # Thing 1 is out of the other user's scope: its photo does not exist for them.
    for url in (theirs["url"], theirs["thumbnail_url"],
                "/attachments?object_type=thing&object_id=1"):
        assert_hidden(client.get(url, headers=other_headers))
    for target in (1, 2):
        assert_hidden(client.post(f"/attachments/{theirs['id']}/link", headers=other_headers,
                                  json={"object_type": "thing", "object_id": target}))
    # Their own photos, linked (to thing 2) or not, towards thing 1: the target is out of
    # scope, so 404 (not a 409 naming thing 2, not the attachment).
    for attachment in (mine, unlinked):
        assert_hidden(client.post(f"/attachments/{attachment['id']}/link",
                                  headers=other_headers,
                                  json={"object_type": "thing", "object_id": 1}))
    # Nothing changed on the way.
    assert client.get(unlinked["url"], headers=other_headers).status_code == 200
    listed = client.get("/attachments?object_type=thing&object_id=1", headers=headers)
    assert [a["id"] for a in listed.get_json()] == [theirs["id"]]
