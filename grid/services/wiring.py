"""What grid.services contributes: its blueprints, the texts of its notices, the booking
reminders and slot generation tasks, the public "service_points" tile layer and map
collection (grid.maps), and the person profile's "bookings" section (grid.profiles).
See server/modules.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from grid.maps import service as maps
from grid.maps import tiles
from grid.profiles import service as profiles
from grid.services import (
    catalogue,
    models,
    on_the_map,
    profile_section,
    reminders,
    requests,
    schedules,
    schemas,
    views,
)
from notifications.service import register_templates
from server.cli import PeriodicTask

if TYPE_CHECKING:
    from server.modules import Registry

TABLES = models  # imported so that the migrations see its tables


def contribute(registry: Registry) -> None:
    catalogue.configure(catalogue.ServiceSettings.from_config(registry.settings))
    registry.blueprints(views.blueprints)
    registry.current_schema(models.Booking, views.current_booking)
    registry.current_schema(models.Service, schemas.ServiceSchema())
    for module in (requests, schedules, reminders):
        register_templates(module.NOTICE_TEMPLATES)
    registry.periodic_tasks((PeriodicTask("service_reminders", 60, reminders.send_reminders),
                             PeriodicTask("service_slots", 3600, schedules.generate_ahead)))
    tiles.register(on_the_map.tile_layer())
    maps.collections["service_points"] = on_the_map.service_points_collection
    person = profiles.profile_sections["person"]
    if not any(name == "bookings" for name, _ in person):
        person.append(("bookings", profile_section.profile_bookings))
