"""Maps keep no tables of their own: layers read the areas, registry and cases tables."""
