"""Map fixtures: the area tree, people and a case category come from tests/fixtures
(areas.py, http.py, cases.py), the tile helpers from tests/fixtures/maps.py."""

from __future__ import annotations

from tests.fixtures.users import make_user  # noqa: F401 - fixture
