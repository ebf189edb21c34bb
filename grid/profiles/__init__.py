"""Profiles (画像): one request that tells everything about a person, a household, a building
or an area.

A package of its own rather than part of grid/maps: profiles are aggregates over the
registry, visits and cases with their own masking and audit rules, and need no geometry;
maps are geometry and need no personal data. Keeping them apart keeps each one's rules
readable (and lets a deployment drop the map without the profiles).
"""
