"""The blob store (附件存储): where attachment bytes live, content-addressed.

Blobs live behind a small interface (`BlobStore`: put / open / delete) whose local
implementation writes under STORAGE_DIR, sharded by the sha256 of the content
(`ab/cd/abcd….jpg`): the same bytes are stored once, whoever uploads them. An S3 store can
replace it later (set `app.extensions["blob_store"]`). Background jobs keep their uploads
(ledger imports) here too.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO, Protocol

from flask import current_app

# Images, and the uploads background jobs read (server/jobs.py: ledgers).
_KEY_RE = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}\.(?:jpg|png|webp|xlsx|csv)$")


def blob_key(sha256: str, ext: str) -> str:
    """Content-addressed key of a blob: sharded by the first two bytes of its sha256."""
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}.{ext}"


class BlobStore(Protocol):
    """Where attachment bytes live. Keys are content-addressed (`blob_key`), so `put` of a
    key that exists may do nothing: the bytes are the same."""

    def put(self, key: str, data: bytes) -> None: ...

    def open(self, key: str) -> BinaryIO:
        """A readable binary file object; FileNotFoundError when the blob is missing."""
        ...

    def delete(self, key: str) -> None:
        """Remove the blob; a missing one is not an error."""
        ...


class LocalBlobStore:
    """Blobs as files under a directory (STORAGE_DIR): `<root>/ab/cd/abcd….jpg`.

    Writes go to a temporary file in the target directory, fsynced, then renamed into
    place: a reader never sees half a blob, and two writers of one key both succeed.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        if not _KEY_RE.match(key):
            raise ValueError(f"not a blob key: {key!r}")
        return self.root / key

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def open(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")  # noqa: SIM115 - the response closes it

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def blob_store() -> BlobStore:
    """The app's blob store: `app.extensions["blob_store"]` if set (S3 later), else a
    LocalBlobStore on STORAGE_DIR."""
    extensions = current_app.extensions
    if "blob_store" not in extensions:
        extensions["blob_store"] = LocalBlobStore(current_app.config["STORAGE_DIR"])
    return extensions["blob_store"]

