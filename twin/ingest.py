"""Real data in: building footprints and grid polygons (GeoJSON / GeoPackage / GeoParquet)."""
