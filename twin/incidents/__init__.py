"""Incidents: the closed loop (report → dispatch → handle → follow up), four-level dispatch, statistics,
the synthetic history and credit-based inspection plans."""
