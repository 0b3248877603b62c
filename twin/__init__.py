"""Chancheng Twin: the spatial core (no UI imports).

>>> import twin
>>> t = twin.load()                      # the default twin, built by `twin build`
>>> t.manifest["counts"]["residents"]
1330000
"""

from twin.build import build_twin
from twin.errors import (
    ConflictError,
    CRSError,
    IngestError,
    NotFoundError,
    OutsideDistrictError,
    PartitionError,
    PermissionDenied,
    TwinError,
    TwinNotBuiltError,
    ValidationError,
)
from twin.model import Twin, load
from twin.validate import validate

__all__ = [
    "Twin",
    "load",
    "build_twin",
    "validate",
    "TwinError",
    "ValidationError",
    "CRSError",
    "OutsideDistrictError",
    "IngestError",
    "PartitionError",
    "ConflictError",
    "NotFoundError",
    "PermissionDenied",
    "TwinNotBuiltError",
]
