"""PostGIS/shapely helpers with no domain knowledge."""
