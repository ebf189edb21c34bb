"""Notifications API (devices, inbox): added with issue 6."""

blueprints: list = []
