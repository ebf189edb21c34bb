"""The attachments table (附件): one uploaded photo and the record it belongs to."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base


class Attachment(Base):
    """One uploaded photo: what was stored, by whom, and the record it belongs to."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    # The record it belongs to; both null until it is linked (then linked_at is set).
    object_type: Mapped[str | None] = mapped_column(sa.String(64))
    object_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    uploaded_by: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="RESTRICT"),
                                             nullable=False)
    content_type: Mapped[str] = mapped_column(sa.String(64), nullable=False)  # as stored
    original_format: Mapped[str] = mapped_column(sa.String(16), nullable=False)  # as sent
    size: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)  # stored bytes
    sha256: Mapped[str] = mapped_column(sa.String(64), nullable=False)  # of stored bytes
    width: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    height: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    storage_key: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    thumbnail_key: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
    )
    linked_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))

    __table_args__ = (
        sa.Index("ix_attachments_object", "object_type", "object_id"),
        sa.Index("ix_attachments_uploader_sha256", "uploaded_by", "sha256"),
        sa.CheckConstraint(
            "(object_type IS NULL) = (object_id IS NULL) "
            "AND (object_type IS NULL) = (linked_at IS NULL)",
            name="link_complete",
        ),
    )

