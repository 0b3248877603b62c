"""The ``twin`` command line. Sub-commands live in ``twin/cli/*.py`` modules, each with ``register(sub)``.

Every command catches :class:`twin.errors.TwinError`, prints the message to stderr (or a JSON error object
for commands that print JSON) and exits with status 2; a validation failure exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from twin.encoding import dumps
from twin.errors import TwinError

__all__ = ["main", "COMMAND_MODULES"]

# Each module defines ``register(subparsers) -> None``; its parsers set ``func=callable(args) -> int``.
COMMAND_MODULES = (
    "twin.cli.build",  # build, validate, info
    "twin.cli.query",  # query, overlay
    "twin.cli.partition",  # grids: edit, versions, diff, export, import, rebalance, balance
    "twin.cli.incidents",  # incidents, inspections
    "twin.cli.service",  # serve, audit, users
    "twin.cli.services",  # services: run, status (no-application services)
    "twin.cli.changes",  # changes: apply, list (the live twin)
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="twin", description="Chancheng Twin: one map for the district.")
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # that command group is not installed/built yet
                continue
            raise
        mod.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except TwinError as e:
        if getattr(args, "json_errors", False):
            print(dumps({"error": type(e).__name__, "message": str(e)}).decode())
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
