"""The insights API (研判与预警)."""

from __future__ import annotations

blueprints: list = []

# --- hotspots: hot spots and labour risk ---
