"""All exceptions raised by :mod:`twin` live here.

Every error is a :class:`TwinError`; the app and the CLI catch that one base class and show the message.
Messages say what is wrong, show the offending value and say how to fix it.
"""

from __future__ import annotations

__all__ = [
    "TwinError",
    "ValidationError",
    "CRSError",
    "OutsideDistrictError",
    "ConflictError",
    "NotFoundError",
    "IngestError",
    "PartitionError",
    "PermissionDenied",
    "TwinNotBuiltError",
    "InvalidTransition",
]


class TwinError(Exception):
    """Base class of every error the twin raises on purpose."""


class ValidationError(TwinError, ValueError):
    """Input data or geometry is malformed (bad GeoJSON, wrong geometry type, NaN coordinates…)."""


class CRSError(ValidationError):
    """Data has no CRS, the wrong CRS, or coordinates that do not fit the CRS (e.g. metres given as degrees)."""


class OutsideDistrictError(ValidationError):
    """The data does not overlap Chancheng District at all."""


class IngestError(ValidationError):
    """A user-supplied file (raster, buildings, grids) cannot be used; the message names the file."""


class PartitionError(ValidationError):
    """A partition (cells → grids) breaks a rule: gap, overlap, non-contiguous grid, grid outside its community."""


class ConflictError(TwinError):
    """A concurrent edit: the version you started from is no longer the head."""


class NotFoundError(TwinError, KeyError):
    """An unknown id or code (grid, community, town, version, record)."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class PermissionDenied(TwinError):
    """The caller's role or scope does not allow this operation."""


class TwinNotBuiltError(TwinError, FileNotFoundError):
    """No twin has been built in the data directory yet."""


class GCJ02Warning(UserWarning):
    """Input coordinates look like GCJ-02 (Amap/Tencent), ≈ 600 m off WGS84 here; convert with ``from_gcj02``."""


__all__ += ["GCJ02Warning"]


class InvalidTransition(ValidationError):
    """An incident action that its current state does not allow (e.g. resolving a case nobody started)."""


class AuthenticationError(PermissionDenied):
    """No API key, or a malformed, unknown or revoked one (HTTP 401; :class:`PermissionDenied` is 403)."""


__all__ += ["AuthenticationError"]
