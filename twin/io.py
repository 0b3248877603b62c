"""File I/O: the only module that opens files.

Writes are atomic: data goes to a temporary file in the same directory, is fsynced, then ``os.replace``-d over
the target, so a crash leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING

import geopandas as gpd
import numpy as np
import pandas as pd

from twin.errors import IngestError

if TYPE_CHECKING:
    from rasterio.crs import CRS
    from rasterio.transform import Affine

__all__ = [
    "default_twin_dir",
    "atomic_write",
    "write_json",
    "read_json",
    "write_table",
    "read_table",
    "read_vector",
    "read_raster",
    "write_raster",
    "sha256_file",
    "read_package_csv",
    "read_package_vector",
    "package_data",
]


_CHECKOUT = Path(__file__).resolve().parent.parent


def package_data(name: str) -> Traversable:
    """A file shipped in the package's ``data/`` folder (``importlib.resources``), e.g. ``"town_seats.csv"``."""
    ref = resources.files("twin") / "data" / name
    if not ref.is_file():
        raise IngestError(f"{name}: no such file shipped in twin/data/ (the package install is incomplete).")
    return ref


def default_twin_dir() -> Path:
    """Where the default twin lives.

    ``$TWIN_HOME`` when set; else ``data/generated/default`` in the source checkout the package runs from (an
    editable install); else (an installed package) ``data/generated/default`` under the current directory.
    """
    env = os.environ.get("TWIN_HOME")
    if env:
        return Path(env)
    base = _CHECKOUT if (_CHECKOUT / "pyproject.toml").is_file() else Path.cwd()
    return base / "data" / "generated" / "default"


def atomic_write(path: str | Path, writer: Callable[[Path], object]) -> Path:
    """Call ``writer(tmp_path)`` then atomically move ``tmp_path`` to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
    try:
        writer(tmp_path)
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        os.fsync(dir_fd)
        os.close(dir_fd)
    except OSError:
        pass
    return path


def write_json(obj: object, path: str | Path) -> Path:
    """Atomically write ``obj`` as pretty, key-sorted UTF-8 JSON."""
    text = json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True, default=_json_default)
    return atomic_write(path, lambda p: p.write_text(text + "\n", encoding="utf-8"))


def _json_default(o: object) -> object:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: str | Path) -> dict:
    """Read a JSON object (a twin's manifest and the like)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Atomically write a DataFrame as Parquet, or a GeoDataFrame as GeoParquet (geometry in its own CRS)."""
    return atomic_write(path, lambda p: df.to_parquet(p, index=False, compression="zstd"))


def read_table(path: str | Path, *, geo: bool = False, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a Parquet (``geo=False``) or GeoParquet (``geo=True``) file."""
    if geo:
        return gpd.read_parquet(path, columns=columns)
    return pd.read_parquet(path, columns=columns)


def read_vector(path: str | Path) -> gpd.GeoDataFrame:
    """Read GeoJSON, GeoPackage, Shapefile or GeoParquet into a GeoDataFrame; errors name the file."""
    path = Path(path)
    if not path.exists():
        raise IngestError(f"{path}: file not found.")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".geoparquet"):
            return gpd.read_parquet(path)
        return gpd.read_file(path)
    except IngestError:
        raise
    except Exception as e:  # pyogrio/pyarrow raise many types; say which file failed and why
        raise IngestError(
            f"{path}: cannot read as a vector layer ({type(e).__name__}: {e}). "
            "Use GeoJSON, GeoPackage or GeoParquet."
        ) from e


def read_raster(path: str | Path) -> tuple[np.ndarray, Affine, CRS | None, float | None]:
    """Read band 1 of a GeoTIFF → (float64 array, affine transform, CRS or None, nodata)."""
    import rasterio

    path = Path(path)
    if not path.exists():
        raise IngestError(f"{path}: file not found.")
    try:
        with rasterio.open(path) as src:
            arr = src.read(1).astype(np.float64)
            return arr, src.transform, src.crs, src.nodata
    except Exception as e:
        raise IngestError(f"{path}: cannot read as a raster ({type(e).__name__}: {e}).") from e


def write_raster(arr: np.ndarray, transform: Affine, crs: str, path: str | Path, *, nodata: float = -1.0) -> Path:
    """Atomically write a single-band float32 GeoTIFF (deflate-compressed)."""
    import rasterio

    def _write(p: Path) -> None:
        with rasterio.open(
            p, "w", driver="GTiff", height=arr.shape[0], width=arr.shape[1], count=1, dtype="float32",
            crs=crs, transform=transform, nodata=nodata, compress="deflate",
        ) as dst:
            dst.write(arr.astype(np.float32), 1)

    return atomic_write(path, _write)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_package_csv(name: str) -> pd.DataFrame:
    """A CSV shipped in ``twin/data/`` (codes kept as strings)."""
    with package_data(name).open("rb") as fh:
        return pd.read_csv(fh, dtype=str, keep_default_na=False)


def read_package_vector(name: str) -> gpd.GeoDataFrame:
    """A vector file shipped in ``twin/data/``."""
    with resources.as_file(package_data(name)) as path:
        return read_vector(path)
