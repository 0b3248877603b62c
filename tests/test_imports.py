"""The core never imports the UI stack."""

import subprocess
import sys


def test_twin_core_does_not_import_streamlit_or_pydeck():
    code = (
        "import importlib, pkgutil, sys, twin\n"
        "for m in pkgutil.iter_modules(twin.__path__):\n"
        "    importlib.import_module('twin.' + m.name)\n"
        "bad = [m for m in ('streamlit', 'pydeck', 'folium', 'streamlit_folium') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"twin imported UI modules: {out.stdout}"
