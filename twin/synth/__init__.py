"""Synthetic generation: population surface, buildings, households and residents, businesses, workers and cameras,
and the build pipeline that writes a twin (seeded, calibrated to published totals, labelled synthetic)."""
