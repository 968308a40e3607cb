"""The multi-goal picture at the published budget: MEow's samples from the origin reach several
goals, the PNG is a real image, and SAC's counts are reported (tools/multigoal_picture.py)."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from script_loader import load_script


@pytest.mark.slow
def test_meow_reaches_three_goals_and_the_picture_is_drawn(tmp_path, capsys):
    picture = load_script("multigoal_picture")
    out, counts = tmp_path / "figures" / "multigoal.png", tmp_path / "multigoal.json"
    # 4,000 env steps, seed 1, 100 trajectories of up to 100 steps each (the script's defaults);
    # MEow in this process, SAC in a second one
    result = picture.main(["--out", str(out), "--json", str(counts)])
    assert json.loads(counts.read_text()) == result
    meow, sac = result["meow"]["goals"], result["sac"]["goals"]
    with capsys.disabled():  # SAC's counts are reported, not asserted: shown even when the test passes
        print(
            f"\nMEow: {meow}\nSAC:  {sac}\nwithin 30 steps: MEow {result['meow']['goals_within_30_steps']}, "
            f"SAC {result['sac']['goals_within_30_steps']}"
        )
    assert sum(meow.values()) == 100 and sum(sac.values()) == 100
    assert result["env_steps"] == 4000 and result["sac"]["settings_changed_from_sb3_defaults"] == {
        "learning_starts": 1000,
        "gamma": 0.9,
    }
    # Seed 1 measured (5,0): 19, (-5,0): 5, (0,5): 25, (0,-5): 9, none: 42 (docs/RESULTS.md).
    # A goal counts when at least 2% of the trajectories end there.
    well_reached = [goal for goal, n in meow.items() if goal != "none" and n >= 2]
    assert len(well_reached) >= 3, meow
    with Image.open(out) as image:
        image.verify()  # a complete, well-formed PNG
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 1.8 * image.height > 300  # two panels side by side
        colors = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colors is not None and len(colors) > 100  # drawn, not blank
    assert out.stat().st_size < 300_000
