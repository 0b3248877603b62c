"""Edit mode of the map app through streamlit.testing.v1.AppTest: pick a grid, preview, commit, conflict, undo,
rejection, time travel. Every test uses its own temporary state store (TWIN_DATABASE_URL), never the twin's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from twin.errors import PartitionError  # noqa: E402
from twin.partition import edits, versions  # noqa: E402
from twin.partition.balance import balance_report  # noqa: E402
from twin.partition.model import neighbour_grids  # noqa: E402
from twin.store.sql import open_store  # noqa: E402

APP = str(ROOT / "apps" / "streamlit_app.py")
EDIT = "Edit grids 网格调整"


@pytest.fixture()
def store_url(tmp_path, monkeypatch, default_twin):
    own = Path(default_twin.root) / "state.sqlite"
    before = own.stat().st_mtime_ns if own.exists() else None
    url = str(tmp_path / "state.sqlite")
    monkeypatch.setenv("TWIN_DATABASE_URL", url)
    yield url
    assert (own.stat().st_mtime_ns if own.exists() else None) == before  # the twin's own store is untouched


@pytest.fixture(scope="module")
def code(default_twin) -> str:
    return str(default_twin.grids["grid_code"].iloc[7])


def _edit_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["mode"] = EDIT
    at.run()
    _ok(at)
    assert "Edit grids 网格调整" in [h.value for h in at.subheader]
    return at


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _select(at: AppTest, code: str) -> None:
    at.selectbox(key="ed_grid").select(code).run()
    _ok(at)


def _metrics(at: AppTest) -> dict[str, str]:
    out: dict[str, str] = {}
    for m in at.metric:
        out.setdefault(m.label, m.value)
    return out


def _commit(at: AppTest, author: str = "ann", reason: str = "test edit") -> None:
    at.text_input(key="ed_author").input(author)
    at.text_input(key="ed_reason").input(reason)
    at.button(key="ed_commit").click().run()
    _ok(at)


def test_pick_a_grid_shows_its_balance_row_and_neighbours(store_url, default_twin, code):
    at = _edit_app()
    store = open_store(store_url)
    assert versions.head_version(store) == 1 and at.session_state["ed_base"] == 1
    # a click on the map selects the grid under it (the component's click event)
    at.session_state["map"] = {"event": "click", "seq": 1, "properties": {"grid_code": code}}
    at.run()
    _ok(at)
    assert at.session_state["ed_grid"] == code
    row = balance_report(default_twin, versions.load_partition(store, default_twin, 1)).table.set_index(
        "grid_code").loc[code]
    shown = _metrics(at)
    assert shown["Workload"] == f"{row['workload']:,.0f}"
    assert shown["Deviation"] == f"{100 * row['deviation']:+.1f} %"
    assert shown["Area km²"] == f"{row['area_km2']:.3f}"
    assert shown["Polsby–Popper"] == f"{row['polsby_popper']:.2f}"
    nb_md = next(m.value for m in at.markdown if m.value.startswith("**Neighbours"))
    nb = neighbour_grids(versions.load_partition(store, default_twin, 1), code)
    assert nb and all(f"`{n}`" in nb_md for n in nb)
    # the balance panel: district CV and the flagged count of the report
    rep = balance_report(default_twin, versions.load_partition(store, default_twin, 1), polygons=False)
    assert shown["CV"] == f"{rep.summary['cv']:.3f}" and shown["Flagged"] == str(rep.summary["flagged"])


def test_split_preview_then_commit_creates_a_version(store_url, default_twin, code):
    at = _edit_app()
    _select(at, code)
    at.button(key="ed_split").click().run()
    _ok(at)
    assert not at.error
    assert any(h.value.startswith(f"Preview: split {code} into 2") for h in at.subheader)
    pv = at.session_state["ed_preview"]
    grids = pv["effect"].grids
    parts = grids[grids["status"].isin(["changed", "added"])]
    assert sorted(parts["status"]) == ["added", "changed"] and code in set(parts["grid_code"])
    assert parts["workload_after"].sum() == pytest.approx(parts["workload_before"].dropna().sum())
    assert pv["partition"].n_grids == len(default_twin.grids) + 1
    assert len(pv["effect"].shapes) == 2  # the two proposed grids are outlined on the map
    table = at.dataframe[0].value if "workload" in at.dataframe[0].value.columns else at.dataframe[1].value
    assert set(parts["grid_code"]) <= set(table["grid"])
    store = open_store(store_url)
    assert versions.head_version(store) == 1  # a preview writes nothing
    # commit without an author is refused with the API's message
    at.button(key="ed_commit").click().run()
    assert at.error and "author" in at.error[0].value
    _commit(at, "ann", "split the station block")
    assert not at.error
    head = versions.head_version(store)
    info = versions.version_info(store, head)
    assert (head, info.parent, info.author, info.reason) == (2, 1, "ann", "split the station block")
    assert versions.load_partition(store, default_twin, 2).assignment_equals(pv["partition"])
    assert at.session_state["ed_base"] == 2 and at.session_state["ed_version"] == 2
    assert _metrics(at)["CV"] == f"{balance_report(default_twin, pv['partition'], polygons=False).summary['cv']:.3f}"


def test_conflict_names_the_head_and_reload_moves_to_it(store_url, default_twin, code):
    ann, bob = _edit_app(), _edit_app()
    for at in (ann, bob):
        _select(at, code)
        at.button(key="ed_split").click().run()
        _ok(at)
    _commit(ann, "ann", "first")
    _commit(bob, "bob", "second")
    assert bob.error and "version 1 is no longer the head: version 2" in bob.error[0].value
    store = open_store(store_url)
    assert versions.head_version(store) == 2 and versions.version_info(store, 2).author == "ann"
    bob.button(key="ed_reload").click().run()
    _ok(bob)
    assert bob.session_state["ed_base"] == 2 and bob.session_state["ed_preview"] is None
    assert not bob.error


def test_undo_returns_to_the_parent_partition(store_url, default_twin, code):
    at = _edit_app()
    _select(at, code)
    at.number_input(key="ed_k").set_value(3)
    at.button(key="ed_split").click().run()
    _ok(at)
    assert at.session_state["ed_preview"]["partition"].n_grids == len(default_twin.grids) + 2
    _commit(at)
    store = open_store(store_url)
    at.button(key="ed_undo").click().run()
    _ok(at)
    head = versions.head_version(store)
    assert head == 3 and versions.version_info(store, head).author == "ann"
    assert versions.load_partition(store, default_twin, 3).assignment_equals(
        versions.load_partition(store, default_twin, 1))
    assert at.session_state["ed_base"] == 3
    # time travel: view version 2 (read-only); the balance answers for that version
    at.selectbox(key="ed_version").select(2).run()
    _ok(at)
    assert any("Viewing version 2" in i.value for i in at.info)
    assert any(c.value.startswith(f"{len(default_twin.grids) + 2} grids") for c in at.caption)
    assert "ed_split" not in [b.key for b in at.button]  # no edits on an old version
    md = " ".join(m.value for m in at.markdown)
    assert "Version 1 → 2" in md


def test_merge_across_communities_is_rejected_with_the_rule(store_url, default_twin, code):
    at = _edit_app()
    _select(at, code)
    p = versions.load_partition(open_store(store_url), default_twin, 1)
    comm = dict(zip(p.grids["grid_code"], p.grids["community_code"]))
    other = next(n for n in neighbour_grids(p, code) if comm[n] != comm[code])
    at.selectbox(key="ed_merge_with").select(other).run()
    at.button(key="ed_merge").click().run()
    _ok(at)
    with pytest.raises(PartitionError) as e:
        edits.merge_grids(p, [code, other])
    assert [x.value for x in at.error] == [str(e.value)]
    assert "different communities" in at.error[0].value
    assert at.session_state["ed_preview"] is None
    assert versions.head_version(open_store(store_url)) == 1


def test_drawn_area_moves_cells_as_the_api_does(store_url, default_twin, code):
    import shapely.geometry

    from twin.cells import cells_to_latlng

    at = _edit_app()
    _select(at, code)
    p = versions.load_partition(open_store(store_url), default_twin, 1)
    comm = dict(zip(p.grids["grid_code"], p.grids["community_code"]))
    other = next(n for n in neighbour_grids(p, code) if comm[n] == comm[code])
    mine = set(p.cells_of(code).tolist())
    cell = next(int(i) for i in p.cells_of(other) if mine & set(p.adjacency[int(i)].indices.tolist()))
    lat, lng = cells_to_latlng(p.cells[[cell]])
    area = shapely.geometry.Point(float(lng[0]), float(lat[0])).buffer(0.0002)
    at.session_state["map"] = {"event": "draw", "seq": 2,
                               "geojson": {"type": "Feature", "geometry": shapely.geometry.mapping(area)}}
    at.run()
    at.button(key="ed_move").click().run()
    _ok(at)
    try:
        expected = edits.move_area(p, area, code)
    except PartitionError as e:
        assert [x.value for x in at.error] == [str(e)]
        return
    pv = at.session_state["ed_preview"]
    assert not at.error and pv["partition"].assignment_equals(expected)
    assert pv["effect"].summary["cells_moved"] == 1


def test_split_by_drawn_shape_is_the_one_edit_dispatch(store_url, default_twin, code):
    """The drawn polygon's outline cuts the grid: the preview equals apply_edit(EditOp("split_grid", geometry=…))."""
    import shapely.geometry

    from twin.partition.edit_ops import EditOp, apply_edit

    at = _edit_app()
    _select(at, code)
    p = versions.load_partition(open_store(store_url), default_twin, 1)
    grid = default_twin.grid(code).geometry
    x0, y0, x1, y1 = grid.bounds
    half = shapely.geometry.box(x0 - 0.01, y0 - 0.01, (x0 + x1) / 2, y1 + 0.01)  # the west half of the grid
    at.session_state["map"] = {"event": "draw", "seq": 3,
                               "geojson": {"type": "Feature", "geometry": shapely.geometry.mapping(half)}}
    at.run()
    at.button(key="ed_split_drawn").click().run()
    _ok(at)
    try:
        expected = apply_edit(p, EditOp("split_grid", grid_code=code, geometry=half)).partition
    except PartitionError as e:
        assert [x.value for x in at.error] == [str(e)]
        return
    pv = at.session_state["ed_preview"]
    assert not at.error and pv["op"] == "split_drawn" and pv["partition"].assignment_equals(expected)
    assert pv["partition"].n_grids == p.n_grids + 1


def test_edit_buttons_map_to_edit_ops():
    import shapely.geometry

    import twin
    from apps.edit.actions import EDIT_BUTTONS, edit_op

    sq = shapely.geometry.mapping(shapely.geometry.box(113.1, 23.0, 113.11, 23.01))
    ss = {"ed_grid": "g1", "ed_k": 3, "ed_merge_with": "g2", "ed_drawn": sq, "ed_clip": True}
    ops = {b: edit_op(b, ss) for b in EDIT_BUTTONS}
    assert {b: o.op for b, o in ops.items()} == EDIT_BUTTONS
    assert (ops["split_k"].grid_code, ops["split_k"].k, ops["split_k"].geometry) == ("g1", 3, None)
    assert ops["split_drawn"].geometry.equals(shapely.geometry.shape(sq))
    assert list(ops["merge"].grid_codes) == ["g1", "g2"]
    assert ops["redraw"].clip and ops["move"].to_grid == "g1"
    with pytest.raises(twin.ValidationError, match="draw a shape"):
        edit_op("move", {"ed_grid": "g1"})
    with pytest.raises(twin.ValidationError, match="unknown edit button"):
        edit_op("explode", ss)
