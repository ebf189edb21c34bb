"""Photos made safe to store (照片处理): checked by content, metadata stripped, thumbnails.

- An upload's type is decided by its content (magic bytes, then a full decode with Pillow),
  never by its name or the client's content type: JPEG, PNG, WebP, and HEIC/HEIF when
  pillow-heif is installed. Everything else is a 415.
- Every image is decoded and re-encoded from its pixels alone (orientation applied first),
  so no EXIF (GPS above all), XMP, comment or other metadata survives; only the ICC colour
  profile is kept. HEIC is stored as JPEG. A JPEG thumbnail of at most 320 px is made too.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageOps

from server.errors import DomainError, Invalid, field_errors

try:  # HEIC/HEIF (iPhones) needs pillow-heif; without it such uploads are a clear 415.
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF_SUPPORTED = True
except ImportError:  # pragma: no cover - pillow-heif is in requirements.txt
    HEIF_SUPPORTED = False

log = logging.getLogger("server.storage")

THUMBNAIL_PX = 320
# Decoding cost grows with pixels, not bytes: a small file may unpack into gigabytes. Phone
# cameras stay below 50 MP (48 MP sensors); Pillow's own bomb guard starts at 89 MP.
MAX_PIXELS = 60_000_000
JPEG_QUALITY = 90
THUMBNAIL_QUALITY = 80


class PayloadTooLarge(DomainError):
    status = 413


class UnsupportedMediaType(DomainError):
    status = 415


# ISO BMFF brands of HEIF images coded with HEVC (what pillow-heif's libheif decodes here).
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"}
_HEIF_GENERIC = {b"mif1", b"msf1"}
# Sent format → (stored format, content type, file extension).
_OUTPUT = {
    "JPEG": ("JPEG", "image/jpeg", "jpg"),
    "PNG": ("PNG", "image/png", "png"),
    "WEBP": ("WEBP", "image/webp", "webp"),
    "HEIF": ("JPEG", "image/jpeg", "jpg"),
}
ACCEPTED = "JPEG, PNG, WebP or HEIC"


def sniff(data: bytes) -> str | None:
    """The image format the bytes announce (their magic numbers), or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp":
        box_size = int.from_bytes(data[:4], "big")
        major = data[8:12]
        compatible = {data[i:i + 4] for i in range(16, min(box_size, len(data), 64), 4)}
        if major in _HEIF_BRANDS:
            return "HEIF"
        if major in _HEIF_GENERIC and compatible & _HEIF_BRANDS:
            return "HEIF"
    return None


@dataclass(frozen=True)
class Processed:
    """An upload made safe to store: its re-encoded bytes and thumbnail."""

    original_format: str
    data: bytes
    content_type: str
    ext: str
    width: int
    height: int
    thumbnail: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info


def _normalized(img: Image.Image, out_format: str) -> Image.Image:
    """`img` in a mode `out_format` can hold: alpha flattened on white for JPEG."""
    if out_format == "JPEG":
        if _has_alpha(img):
            rgba = img.convert("RGBA")
            flat = Image.new("RGB", img.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
            return flat
        return img if img.mode in ("RGB", "L") else img.convert("RGB")
    keep = ("RGB", "RGBA", "L", "LA") if out_format == "PNG" else ("RGB", "RGBA")
    if img.mode in keep and "transparency" not in img.info:
        return img
    return img.convert("RGBA" if _has_alpha(img) else "RGB")


def _pristine(img: Image.Image) -> Image.Image:
    """The pixels alone: a new image carries no info, EXIF, XMP, comment or palette tricks."""
    clean = Image.new(img.mode, img.size)
    clean.paste(img)
    return clean


def _encode(img: Image.Image, out_format: str, icc: bytes | None, quality: int) -> bytes:
    out = io.BytesIO()
    options: dict[str, Any] = {}
    if icc:
        options["icc_profile"] = icc
    if out_format == "JPEG":
        options.update(quality=quality, optimize=True)
    elif out_format == "WEBP":
        options.update(quality=quality, method=4)
    img.save(out, format=out_format, **options)
    return out.getvalue()


def _colour_family(mode: str) -> str:
    return {"L": "L", "LA": "L", "RGB": "RGB", "RGBA": "RGB"}.get(mode, mode)


def process_image(data: bytes) -> Processed:
    """Check an upload by its content and re-encode it without metadata.

    415 for anything but JPEG/PNG/WebP/HEIC (or HEIC without pillow-heif), 422 for an image
    of such a type that cannot be decoded, 413 for more than MAX_PIXELS pixels.
    """
    if not data:
        raise Invalid(field_errors("file", "The file is empty.", location="form"),
                      message="The file is empty")
    kind = sniff(data)
    if kind is None:
        raise UnsupportedMediaType(
            f"The file is not a {ACCEPTED} image (its content was checked, not its name or "
            "content type)")
    if kind == "HEIF" and not HEIF_SUPPORTED:
        raise UnsupportedMediaType(
            "HEIC/HEIF photos are not supported by this server (pillow-heif is not "
            "installed); send JPEG, PNG or WebP")
    out_format, content_type, ext = _OUTPUT[kind]
    unreadable = f"The file looks like a {kind} image but cannot be decoded (truncated or corrupt)"
    try:
        img = Image.open(io.BytesIO(data), formats=[kind])
        width, height = img.size
    except Exception as exc:  # untrusted input: any decoder failure is the client's
        log.info("undecodable upload", extra={"format": kind, "error": repr(exc)})
        raise Invalid(field_errors("file", unreadable, location="form"),
                      message=unreadable) from None
    if width * height > MAX_PIXELS:
        raise PayloadTooLarge(f"The image is {width}×{height} pixels; the limit is "
                              f"{MAX_PIXELS / 1e6:g} megapixels")
    try:
        img.load()
        icc = img.info.get("icc_profile")
        source_mode = img.mode
        try:
            img = ImageOps.exif_transpose(img)  # keep what the camera meant by "up"
        except Exception:  # malformed EXIF: keep the pixels as stored
            log.info("exif orientation unreadable", extra={"format": kind})
        picture = _pristine(_normalized(img, out_format))
        thumb = _pristine(_normalized(img, "JPEG"))
        thumb.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX), Image.Resampling.LANCZOS)

        def profile(mode: str) -> bytes | None:
            # A profile for another colour space (CMYK, grey…) would be wrong: drop it.
            return icc if _colour_family(mode) == _colour_family(source_mode) else None

        stored = _encode(picture, out_format, profile(picture.mode), JPEG_QUALITY)
        thumbnail = _encode(thumb, "JPEG", profile(thumb.mode), THUMBNAIL_QUALITY)
    except Exception as exc:
        log.info("undecodable upload", extra={"format": kind, "error": repr(exc)})
        raise Invalid(field_errors("file", unreadable, location="form"),
                      message=unreadable) from None
    return Processed(kind, stored, content_type, ext, picture.width, picture.height, thumbnail)

