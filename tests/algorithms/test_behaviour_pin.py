"""The learner trains exactly as it did before it was split into the loss and its capture wrapper.

``data/pin_29e6591.json`` holds digests of the parameters, target, Adam moments and actions after
a fixed scenario (``pin_scenario.py``), recorded with the learner of commit 29e6591 on each
machine kind it has run on. Equal digests mean bit-identical tensors. The kernels' rounding
depends on the torch build, the CPU's vector instructions and its maker (MKL takes other paths on
Intel and AMD CPUs of the same instruction set), so where no recording matches this machine the
float summaries are compared instead, to a tolerance far below what a changed loss or update
would move them (``test_the_pin_sees_a_changed_update``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pin_scenario import UPDATES, machine, run

PINNED = json.loads((Path(__file__).parent / "data" / "pin_29e6591.json").read_text())
HERE = machine()
MATCHING = [
    r
    for r in PINNED["recordings"]
    if all(r[k] == HERE[k] for k in ("torch", "cpu_capability", "cpu_vendor"))
    and r["cpu_model"] in (None, HERE["cpu_model"])  # None: recorded before models were noted
]
SAME_KERNELS = bool(MATCHING)
WANT = (MATCHING or PINNED["recordings"])[0]["cases"]
DIGESTS = ("params", "target", "exp_avg_sq", "sampled_actions", "deterministic_actions")
SUMMARIES = ("loss", "params_abs_sum", "target_abs_sum")


@pytest.mark.parametrize("capture", ["none", pytest.param("compile", marks=pytest.mark.slow)])
@pytest.mark.parametrize("n_step", sorted(UPDATES))
def test_training_matches_the_learner_before_the_split(capture, n_step):
    torch.set_num_threads(1)
    got = run(capture, n_step)
    want = WANT[f"{capture}_n{n_step}"]
    if SAME_KERNELS:
        assert {k: got[k] for k in DIGESTS} == {k: want[k] for k in DIGESTS}
    for key in SUMMARIES:
        assert got[key] == pytest.approx(want[key], rel=1e-5), key


def test_the_pin_sees_a_changed_update():
    """A learning rate one part in a thousand off changes the digests and the sums."""
    import pin_scenario

    torch.set_num_threads(1)
    original = pin_scenario.MEow

    class Nudged(original):
        def __init__(self, *args, **kwargs):
            kwargs["lr"] *= 1.001
            super().__init__(*args, **kwargs)

    pin_scenario.MEow = Nudged
    try:
        got = run("none", 1)
    finally:
        pin_scenario.MEow = original
    want = WANT["none_n1"]
    assert got["params"] != want["params"]
    assert got["params_abs_sum"] != pytest.approx(want["params_abs_sum"], rel=1e-5)


def test_the_machines_recordings_agree_within_the_summaries_tolerance():
    """The summaries' tolerance holds across the machine kinds recorded, whose digests differ."""
    first, *others = PINNED["recordings"]
    assert others, "one recording cannot show the tolerance spans machines"
    for other in others:
        for case, want in first["cases"].items():
            assert other["cases"][case]["params"] != want["params"]
            for key in SUMMARIES:
                assert other["cases"][case][key] == pytest.approx(want[key], rel=1e-5), (case, key)
