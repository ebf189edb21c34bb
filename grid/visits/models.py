"""Visit tables (to be written)."""
