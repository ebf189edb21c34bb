"""Request and response shapes of the insights API."""

from __future__ import annotations



# --- hotspots: hot spots and labour risk ---
