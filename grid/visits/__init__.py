"""Visits (走访): grid workers' visits to households, persons and organisations, visit
policies per group and area, and the worker's list of due visits."""
