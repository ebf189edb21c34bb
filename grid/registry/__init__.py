"""The register (实有人口、实有房屋、实有单位): buildings, houses, households, persons and
organisations — "人进户，户进房，房进格" — collected by grid workers from phones.

Where each part lives, bottom to top (no module imports one above it):
`models.py` (tables) · `validation.py` (ID numbers, USCCs) · `scope.py` (reading within
the actor's grids, the kinds of record) · `history.py` (change history, masked values) ·
`tags.py` (care and key-person tags, what a person shows to an actor) · `collecting.py`
(the rules every write follows: grid by GPS, review flags, idempotent creates, unique 409s,
tombstones) · `records.py` (listing; buildings, houses, households, organisations; ending) ·
`people.py` (persons, moves between households, revealing personal data for a purpose) ·
`indicators.py` (organisations' monthly indicators) · `counts.py` (grid card counts,
building occupancy) · `schemas.py` · `views.py`.
"""
