"""The city fabric's base layers: ids, order, zoom ranges, widths by class, and nothing for a twin without it."""

import json

from layers import fabric


def test_base_layers_of_the_small_twin(small_twin):
    layers = fabric.fabric_layers(small_twin.streets, small_twin.water, small_twin.blocks)
    ids = [lyr.id for lyr in layers]
    assert ids[0] == "fabric-blocks" and ids[-1] == "fabric-streets-major"  # streets drawn on top of the land
    assert "fabric-streets-minor" in ids and "fabric-water" not in ids  # the small disc has no water
    major = next(lyr for lyr in layers if lyr.id == "fabric-streets-major")
    classes = {d["c"] for d in major.data}
    assert classes <= {"collector", "arterial", "expressway"} and "arterial" in classes
    widths = {d["c"]: d["w"] for d in major.data}
    assert widths["arterial"] > widths["collector"]
    minor = next(lyr for lyr in layers if lyr.id == "fabric-streets-minor")
    assert {d["c"] for d in minor.data} == {"local"} and set(fabric.ZOOM_RANGES) >= {"fabric-streets-minor"}
    n_paths = sum(len(lyr.data) for lyr in layers if lyr.id.startswith("fabric-streets"))
    assert n_paths >= len(small_twin.streets)


def test_json_is_cached_and_compact(small_twin):
    got = fabric.base_layers_json(small_twin)
    assert [i for i, _ in got] == [lyr.id for lyr in fabric.fabric_layers(small_twin.streets, small_twin.water,
                                                                           small_twin.blocks)]
    doc = json.loads(dict(got)["fabric-streets-major"])
    assert doc["@@type"] == "PathLayer" and doc["widthUnits"] == "meters"
    assert fabric.base_layers_json(small_twin) == got and "layers.fabric" in small_twin.cache


def test_no_fabric_no_layers():
    assert fabric.fabric_layers(None, None, None) == []
    legend = fabric.fabric_legend(["fabric-water"])
    assert legend["layers"] == ["fabric-water"] and any(r["label"] == "arterial" for r in legend["rows"])
