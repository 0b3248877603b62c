"""Real data in: population rasters, building footprints and grid layers replace their synthetic pieces."""
