"""Maps (地图): vector tiles of areas, buildings, cases and organisations, one grid's map as
GeoJSON (with its 网格公示 card), and a static SVG print map. Geometry is built in PostGIS."""
