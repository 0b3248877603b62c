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


# --- brush, redo, visual diff, errors next to their control (issue 14) -------------------------------------------

def _map_args(at: AppTest) -> dict:
    """The arguments the app sent to the map component in the last run (layers, legends, brush …)."""
    import json

    return json.loads(at.get("component_instance")[0].proto.json_args)


def _brush_cells(p, code: str) -> tuple[list[str], list[str]]:
    """Two strokes for the brush: cells of a same-community neighbour that touch ``code`` and can move one after the
    other (checked with the core's move_cells), as hex strings."""
    from layers.hexagons import cells_to_hex

    comm = dict(zip(p.grids["grid_code"], p.grids["community_code"]))
    mine = set(p.cells_of(code).tolist())
    for other in (n for n in neighbour_grids(p, code) if comm[n] == comm[code]):
        border = [int(i) for i in p.cells_of(other) if mine & set(p.adjacency[int(i)].indices.tolist())]
        for a in border:
            for b in border:
                if a == b:
                    continue
                try:
                    edits.move_cells(p, p.cells[[a]], code)
                    edits.move_cells(p, p.cells[[a, b]], code)
                except PartitionError:
                    continue
                return cells_to_hex(p.cells[[a]]), cells_to_hex(p.cells[[b]])
    raise AssertionError(f"no paintable pair of cells next to grid {code}")


def test_brush_paints_strokes_live_and_commits_them_as_one_version(store_url, default_twin, code):
    from twin.partition.edit_ops import EditOp, apply_edit

    at = _edit_app()
    _select(at, code)
    store = open_store(store_url)
    p = versions.load_partition(store, default_twin, 1)
    # the map gets what it needs to paint and to show the balance live: the target first, its neighbours' cells
    b = _map_args(at)["brush"]
    assert b["target"] == code and b["grids"][0][0] == code and b["painted"] == []
    table = balance_report(default_twin, p, polygons=False).table.set_index("grid_code")
    assert {g[0] for g in b["grids"]} == {code, *neighbour_grids(p, code)}
    assert all(g[2] == pytest.approx(table.at[g[0], "workload"], abs=0.01) for g in b["grids"])
    first, second = _brush_cells(p, code)
    assert b["cells"][first[0]][0] != 0  # a neighbour's cell, with its workload
    # stroke 1, stroke 2 (the component's "brush" events): each previews the whole painting as one move_cells
    at.session_state["map"] = {"event": "brush", "seq": 11, "target": code, "cells": first}
    at.run()
    _ok(at)
    at.session_state["map"] = {"event": "brush", "seq": 12, "target": code, "cells": second}
    at.run()
    _ok(at)
    assert not at.error
    pv = at.session_state["ed_preview"]
    expected = apply_edit(p, EditOp("move_cells", cells=first + second, to_grid=code)).partition
    assert pv["op"] == "brush" and pv["partition"].assignment_equals(expected)
    assert pv["effect"].summary["cells_moved"] == 2
    assert sorted(_map_args(at)["brush"]["painted"]) == sorted(first + second)
    # the balance panel of the preview: the target's workload before → after, by name
    named = pv["named"].set_index("grid_code")
    rep_after = balance_report(default_twin, expected, polygons=False).table.set_index("grid_code")
    assert named.at[code, "workload_after"] == pytest.approx(rep_after.at[code, "workload"])
    assert named.at[code, "residents_after"] == rep_after.at[code, "residents"]
    shown = next(d.value for d in at.dataframe if "residents" in d.value.columns and "name" in d.value.columns)
    assert named.at[code, "grid_name"] in set(shown["name"])
    ids = [i for i, _ in _map_args(at)["layers"]]
    assert "edit-preview" in ids and "edit-brush" in ids
    # an invalid stroke (a cell of another community) is dropped; the rule is shown next to the brush
    comm = dict(zip(p.grids["grid_code"], p.grids["community_code"]))
    foreign = next((n for n in neighbour_grids(p, code) if comm[n] != comm[code]), None)
    if foreign is not None:
        from layers.hexagons import cells_to_hex

        at.session_state["map"] = {"event": "brush", "seq": 13, "target": code,
                                   "cells": cells_to_hex(p.cells[p.cells_of(foreign)[:1]])}
        at.run()
        _ok(at)
        assert at.session_state["ed_error_at"] == "brush"
        assert len(at.error) == 1 and "a grid must stay inside its community" in at.error[0].value
        assert "must stay inside its community" in _map_args(at)["brush"]["error"]
        assert at.session_state["ed_preview"]["partition"].assignment_equals(expected)  # the painting is kept
    # commit: the whole painting is ONE version
    _commit(at, "ann", "brush: two cells")
    assert not at.error
    assert versions.head_version(store) == 2 and [v.version for v in versions.list_versions(store)] == [1, 2]
    assert versions.load_partition(store, default_twin, 2).assignment_equals(expected)
    assert at.session_state["ed_brush"] is None and _map_args(at)["brush"]["painted"] == []


def test_preview_layer_fills_proposed_grids_by_their_new_deviation(store_url, default_twin, code):
    import json

    from layers.edit import opaque_deviation_colors

    at = _edit_app()
    _select(at, code)
    at.button(key="ed_split").click().run()
    _ok(at)
    pv = at.session_state["ed_preview"]
    layer = json.loads(pv["layer"])
    feats = {f["properties"]["grid_code"]: f["properties"] for f in layer["data"]["features"]}
    named = pv["named"].set_index("grid_code")
    assert set(feats) == set(pv["effect"].shapes["grid_code"])
    for g, props in feats.items():  # filled (opaque) by the deviation after the edit, on the map's scale
        assert props["fill"] == opaque_deviation_colors([named.at[g, "deviation_after"]])[0]
        assert props["grid_name"] == named.at[g, "grid_name"] and "→" in props["dev"]
    assert layer["filled"] is True and layer["pickable"] is True


def test_commit_without_author_shows_the_error_next_to_commit(store_url, default_twin, code):
    at = _edit_app()
    _select(at, code)
    at.button(key="ed_split").click().run()
    at.button(key="ed_commit").click().run()
    _ok(at)
    assert at.session_state["ed_error_at"] == "commit"
    assert len(at.error) == 1 and "needs an author" in at.error[0].value
    # shown after the Commit button (in the preview's form), not at the top of the panel
    keys = [getattr(e, "key", None) for e in at.main]
    flat = list(at.main)
    assert flat.index(at.error[0]) > flat.index(at.button(key="ed_commit")), keys


def test_undo_twice_then_redo_twice_walks_the_edits(store_url, default_twin, code):
    """Multi-level undo and redo from the edit panel's buttons (the chain lives in the store)."""
    at = _edit_app()
    _select(at, code)
    assert at.button(key="ed_redo_btn").disabled and at.button(key="ed_undo").disabled  # base: nothing either way
    at.button(key="ed_split").click().run()
    _commit(at, "ann", "split")                        # v2
    at.session_state["ed_grid"] = code
    at.number_input(key="ed_k").set_value(3)
    at.button(key="ed_split").click().run()
    _commit(at, "ann", "split again")                  # v3
    store = open_store(store_url)
    p = {v: versions.load_partition(store, default_twin, v) for v in (1, 2, 3)}
    assert at.button(key="ed_undo").label.endswith("v2")
    at.button(key="ed_undo").click().run()             # v4 = state of v2
    _ok(at)
    assert at.button(key="ed_undo").label.endswith("v1") and at.button(key="ed_redo_btn").label.endswith("v3")
    at.button(key="ed_undo").click().run()             # v5 = state of v1
    _ok(at)
    assert versions.load_partition(store, default_twin, 5).assignment_equals(p[1])
    assert at.button(key="ed_undo").disabled and at.button(key="ed_redo_btn").label.endswith("v2")
    at.button(key="ed_redo_btn").click().run()         # v6 = v2 again
    _ok(at)
    at.button(key="ed_redo_btn").click().run()         # v7 = v3 again
    _ok(at)
    assert not at.error
    head = versions.head_version(store)
    info = versions.version_info(store, head)
    assert (head, info.parent, info.author) == (7, 6, "ann") and "redo version 3" in info.reason
    assert versions.load_partition(store, default_twin, 6).assignment_equals(p[2])
    assert versions.load_partition(store, default_twin, 7).assignment_equals(p[3])
    assert at.session_state["ed_base"] == 7 and at.button(key="ed_redo_btn").disabled


def test_visual_diff_between_any_two_versions(store_url, default_twin, code):
    at = _edit_app()
    _select(at, code)
    at.button(key="ed_split").click().run()
    _commit(at, "ann", "split")
    store = open_store(store_url)
    at.session_state["ed_diff_a"] = 1
    at.session_state["ed_diff_b"] = 2
    at.session_state["ed_diff_show"] = True
    at.run()
    _ok(at)
    d = versions.diff_versions(store, default_twin, 1, 2)
    shown = next(x.value for x in at.dataframe if "workload v1 → v2" in x.value.columns)
    assert set(shown["grid"]) == set(d.grids_added + d.grids_changed + d.grids_removed)
    assert set(shown["status"]) == {"added", "changed"}
    p2 = versions.load_partition(store, default_twin, 2)
    names = dict(zip(p2.grids["grid_code"], p2.grids["grid_name"]))
    assert all(n == names[g] for n, g in zip(shown["name"], shown["grid"]))
    args = _map_args(at)
    layer = dict(args["layers"])["edit-diff"]
    import json

    if layer.startswith("@"):
        from apps.components.deckmap import FRONTEND

        layer = (FRONTEND / layer[1:]).read_text()
    feats = json.loads(layer)["data"]["features"]
    assert {f["properties"]["grid_code"] for f in feats} == set(d.grids_added + d.grids_changed)
    assert any(lg["title"] == "Version 1 → 2" for lg in args["legends"])
