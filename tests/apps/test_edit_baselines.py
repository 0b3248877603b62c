"""The re-partition preview shows the proposal's figures next to every baseline of the latest benchmark run."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from apps.edit.preview import baselines_frame  # noqa: E402


def test_baselines_frame_lists_the_proposal_then_each_baseline_with_ours_on_its_communities():
    ours = {"cv": 0.103, "max_dev": 0.0095, "polsby_popper": 0.423, "moved_share": 0.076, "seconds": 7.1}
    latest = {"baselines": {
        "GerryChain ReCom (district)": {"communities": 147, "cv": 0.104, "max_dev": 0.042, "polsby_popper": 0.37,
                                        "moved_share": 0.18, "seconds": 93.0},
        "spopt AZP": {"communities": 26, "cv": 0.0388, "max_dev": 0.0151, "polsby_popper": 0.16, "moved_share": 0.33,
                      "seconds": 269.0, "ours_same": {"cv": 0.0386, "max_dev": 0.0095, "polsby_popper": 0.40,
                                                      "moved_share": 0.07, "seconds": 7.1}}}}
    f = baselines_frame(ours, latest)
    assert list(f["method"]) == ["this proposal (twin.rebalance)", "GerryChain ReCom (district)", "spopt AZP",
                                 "  twin.rebalance, same communities"]
    assert f.loc[0, "cv"] == 0.103 and f.loc[1, "max_dev"] == 0.042 and f.loc[3, "cv"] == 0.0386
    assert list(baselines_frame(ours, None)["method"]) == ["this proposal (twin.rebalance)"]  # no benchmark run yet
