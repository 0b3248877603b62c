"""The ``twin`` command line: thin adapters over the core."""
