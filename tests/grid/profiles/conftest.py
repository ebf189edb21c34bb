"""Profile fixtures: those of tests/grid/maps (area tree, people, a case category)."""

from __future__ import annotations

from tests.grid.maps import conftest as maps_conftest

tree = maps_conftest.tree
member = maps_conftest.member
make_user = maps_conftest.make_user
api = maps_conftest.api
department = maps_conftest.department
category = maps_conftest.category
people = maps_conftest.people
