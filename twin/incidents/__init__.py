"""Incidents: the closed loop (report → dispatch → handle → follow up), four-level dispatch, statistics,
the synthetic history and credit-based inspection plans."""

__all__: list[str] = []  # import from the modules (twin/__init__.py re-exports the public API)
