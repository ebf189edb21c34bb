"""Areas (区域): the city → district → street → community → grid hierarchy, memberships,
departments, and the one scope filter every other context uses."""
