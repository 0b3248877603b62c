"""The ``twin`` command line: thin adapters over the core (``twin.cli.main``)."""

from twin.cli.main import main

__all__ = ["main"]
