"""Register fixtures: the area tree, its members and the Api client come from
tests/fixtures (areas.py, http.py); make_user is the committed one."""

from __future__ import annotations

from tests.fixtures.users import make_user  # noqa: F401 - fixture
