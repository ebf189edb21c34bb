"""Profiles keep no tables of their own: they read the registry, visits and cases."""
