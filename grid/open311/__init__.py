"""Open311 GeoReport v2: a facade over the case module for 311 apps and city systems."""
