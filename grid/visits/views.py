"""Visits API (to be written)."""

blueprints: list = []
