"""Photo and attachment storage (to be written)."""
