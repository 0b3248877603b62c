"""The Streamlit script without a browser (streamlit.testing.v1.AppTest): widgets → twin → panels."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import shapely
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import datetime as dt  # noqa: E402

import twin  # noqa: E402
from apps.panels import TOTAL_LABELS, csv_bytes, fmt_count, summary_csv  # noqa: E402
from twin.incidents.catalogue import load_catalogue  # noqa: E402
from twin.incidents.lifecycle import CST  # noqa: E402
from twin.incidents.store import IncidentStore  # noqa: E402
from twin.incidents.synth import seed_incidents  # noqa: E402
from twin.partition import edits, versions  # noqa: E402
from twin.partition.model import neighbour_grids, partition_from_twin  # noqa: E402
from twin.store.sql import open_store  # noqa: E402

APP = str(ROOT / "apps" / "streamlit_app.py")


@pytest.fixture(scope="module")
def t():
    return twin.load()


@pytest.fixture(autouse=True)
def own_store(tmp_path, monkeypatch):
    """Every test reads and writes its own state store, never the twin's."""
    url = str(tmp_path / "state.sqlite")
    monkeypatch.setenv("TWIN_DATABASE_URL", url)
    return url


def _app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _metrics(at: AppTest) -> dict[str, str]:
    out: dict[str, str] = {}
    for m in at.metric:
        out.setdefault(m.label, m.value)
    return out


def test_start_page_has_no_errors_and_layer_widgets():
    at = _app()
    assert not at.error
    assert "Draw an area 圈选" in [h.value for h in at.subheader]
    for key in ("lyr_bounds", "lyr_hex", "lyr_metric", "lyr_buildings", "lyr_business", "lyr_workers", "lyr_cameras"):
        assert at.checkbox(key=key) is not None
    at.checkbox(key="lyr_metric").check()
    at.checkbox(key="lyr_business").check()
    at.selectbox(key="overlay").select("elderly_80")
    at.run()
    assert not at.exception and not at.error


def test_search_a_grid_gives_its_summary_and_dossier(t):
    at = _app()
    code = str(t.grids["grid_code"].iloc[7])
    label = next(o for o in at.selectbox(key="search").options if o.endswith(code))
    at.selectbox(key="search").select(label).run()
    assert not at.exception and not at.error
    expected = twin.summarize_area(t, json.loads(shapely.to_geojson(t.grid(code).geometry)), by="grid")
    shown = _metrics(at)
    for key, lab in TOTAL_LABELS.items():
        assert shown[lab] == fmt_count(expected.totals[key]), lab
    heads = [h.value for h in at.subheader]
    assert any(h.startswith("Grid dossier") and str(t.grid(code)["grid_name"]) in h for h in heads)
    md = " ".join(m.value for m in at.markdown)
    assert "Neighbouring grids" in md and str(t.grid(code)["town_code"]) not in ("",)
    # the partition's one neighbour definition (shared cell edges), not a geometric "intersects"
    nb_md = next(m.value for m in at.markdown if m.value.startswith("**Neighbouring grids"))
    nb = neighbour_grids(partition_from_twin(t), code)
    assert nb and all(f"({n})" in nb_md for n in nb) and nb_md.count("(") == len(nb)


def test_bad_area_shows_an_error_not_a_traceback():
    at = _app()
    at.session_state["area"] = {"geojson": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
                                "title": "far away", "source": "test"}
    at.run()
    assert not at.exception
    assert at.error
    assert "chancheng" in at.error[0].value.lower() or "district" in at.error[0].value.lower()


def test_summary_csv_has_grid_rows_and_total(t):
    s = twin.summarize_area(t, shapely.geometry.box(113.10, 23.02, 113.11, 23.03), by="grid")
    lines = summary_csv(s).strip().splitlines()
    assert lines[0].startswith("grid_code") and lines[-1].startswith("TOTAL")
    assert len(lines) == len(s.by_grid) + 2
    data = csv_bytes(summary_csv(s))  # the download: UTF-8 with BOM, so spreadsheets read the Chinese names
    assert data.startswith(b"\xef\xbb\xbf") and data.decode("utf-8-sig") == summary_csv(s)


def test_after_a_commit_every_part_of_explore_shows_the_head_version(t, own_store):
    """One map, one truth: a committed split is what the counts, search, dossier and area tables show."""
    store = open_store(own_store)
    versions.ensure_base(store, t)
    code = str(t.grids["grid_code"].iloc[7])
    p2 = edits.split_grid(partition_from_twin(t), code, k=2)
    new = sorted(set(p2.grids["grid_code"]) - set(t.grids["grid_code"]))
    assert len(new) == 1
    v2 = versions.commit(store, p2, base_version=1, author="test", reason="split for the head test")
    at = _app()
    captions = " ".join(c.value for c in at.caption)
    assert f"partition v{v2} (head) · {len(t.grids) + 1} grids" in captions
    label = next(o for o in at.selectbox(key="search").options if o.endswith(new[0]))  # search finds the new grid
    at.selectbox(key="search").select(label).run()
    assert not at.exception and not at.error
    heads = [h.value for h in at.subheader]
    assert any(h.startswith("Grid dossier") for h in heads), heads
    head = versions.checkout(t, v2, store=store)
    expected = twin.summarize_area(head, head.grid(new[0]).geometry, by="grid")
    shown = _metrics(at)
    assert shown[TOTAL_LABELS["residents"]] == fmt_count(expected.totals["residents"])
    assert new[0] in set(expected.by_grid["grid_code"])
    md = " ".join(m.value for m in at.markdown)
    assert f"partition v{v2} (head)" in md  # the dossier names its version


def test_screen_mode_and_incidents_page_show_live_numbers(t, own_store):
    seed_incidents(IncidentStore(open_store(own_store)), t, load_catalogue(), n=3000,
                   end=dt.datetime(2026, 11, 1, tzinfo=CST), seed=7)
    at = _app()
    live = next(c.value for c in at.caption if c.value.startswith("● live"))
    assert "open incidents" in live and "workers online" in live
    at.query_params["screen"] = "1"
    at.run()
    assert not at.exception and not at.error
    at2 = _app()
    at2.switch_page("pages/1_Incidents.py").run()
    assert not at2.exception and not at2.error
    shown = {m.label: m.value for m in at2.metric}
    assert int(shown["Incidents shown"].replace(",", "")) > 0  # the window ends at the latest report, not today
