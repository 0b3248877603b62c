"""The architecture: import-linter contracts (pyproject.toml [tool.importlinter]) and the core's import footprint."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    """Layers (entry points > domain packages > foundations), no UI or web stack in the core, no app in layers."""
    lint = Path(sys.executable).parent / "lint-imports"
    res = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "BROKEN" not in res.stdout and res.stdout.count("KEPT") >= 3


def test_twin_core_does_not_import_streamlit_or_pydeck():
    """Importing every core module (all but the service and the CLI) loads no UI or web-server package."""
    code = (
        "import importlib, pkgutil, sys, twin\n"
        "for m in pkgutil.walk_packages(twin.__path__, 'twin.'):\n"
        "    if not m.name.startswith(('twin.service', 'twin.cli')):\n"
        "        importlib.import_module(m.name)\n"
        "bad = [m for m in ('streamlit', 'pydeck', 'folium', 'fastapi', 'uvicorn') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"twin imported UI or server modules: {out.stdout}"
