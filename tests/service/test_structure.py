"""The service package's shape: no import cycle between its modules, no function-level import of a sibling,
small modules, the public entry points where callers expect them."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import twin.service

ROOT = Path(__file__).resolve().parents[2]
SERVICE = Path(twin.service.__file__).parent
CLI = SERVICE.parent / "cli"


def test_acyclic_contract_is_declared_and_kept():
    """pyproject declares an import-linter ``acyclic_siblings`` contract over twin.service and twin.cli; it holds."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    acyclic = [c for c in contracts if c["type"] == "acyclic_siblings"]
    assert any({"twin.service", "twin.cli"} <= set(c["ancestors"]) for c in acyclic)
    lint = Path(sys.executable).parent / "lint-imports"
    res = subprocess.run([str(lint), "--no-cache", "--contract", acyclic[0]["id"]], cwd=ROOT, capture_output=True,
                         text=True)
    assert res.returncode == 0 and "KEPT" in res.stdout, res.stdout[-3000:] + res.stderr[-1000:]


def _function_imports(path: Path) -> list[str]:
    """Modules imported inside function bodies of ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for sub in ast.walk(node):
                if isinstance(sub, ast.ImportFrom) and sub.module:
                    out.append(sub.module)
                elif isinstance(sub, ast.Import):
                    out.extend(a.name for a in sub.names)
    return out


def test_no_function_level_imports_in_the_service():
    """Service modules import at the top: a function-level import would hide a cycle (the CLI defers its core
    imports on purpose, but never imports a sibling lazily)."""
    for path in sorted(SERVICE.glob("*.py")):
        assert _function_imports(path) == [], path.name
    for path in sorted(CLI.glob("*.py")):
        lazy_siblings = [m for m in _function_imports(path) if m.startswith("twin.cli")]
        assert lazy_siblings == [], path.name


def test_modules_are_small_and_declare_their_api():
    for path in sorted([*SERVICE.glob("*.py"), *CLI.glob("*.py")]):
        text = path.read_text()
        assert len(text.splitlines()) <= 400, f"{path.name}: {len(text.splitlines())} lines"
        if path.name not in ("__init__.py", "__main__.py") or "import" in text:
            assert "__all__" in text or path.name == "__main__.py", path.name


def test_public_entry_points_are_stable():
    """``twin.service.app:create_app`` / ``:app_from_env`` (uvicorn --factory) and ``twin.cli:main``."""
    from twin.cli import main
    from twin.service import app

    assert callable(app.create_app) and callable(app.app_from_env) and callable(main)
    assert {"create_app", "app_from_env", "EditRequest", "problem", "status_for", "MAX_PAGE_SIZE"} <= set(app.__all__)
