"""The learner trains exactly as it did before it was split into the loss and its capture wrapper.

``data/pin_29e6591.json`` holds digests of the parameters, target, Adam moments and actions after
a fixed scenario (``pin_scenario.py``), recorded with the learner of commit 29e6591. Equal
digests mean bit-identical tensors. The kernels' rounding depends on the torch build and the
CPU's vector instructions, so on another build or instruction set the float summaries are
compared instead, to a tolerance far below what a changed loss or update would move them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pin_scenario import UPDATES, run

PINNED = json.loads((Path(__file__).parent / "data" / "pin_29e6591.json").read_text())
SAME_KERNELS = (
    PINNED["torch"] == torch.__version__
    and PINNED["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
)
DIGESTS = ("params", "target", "exp_avg_sq", "sampled_actions", "deterministic_actions")
SUMMARIES = ("loss", "params_abs_sum", "target_abs_sum")


@pytest.mark.parametrize("capture", ["none", pytest.param("compile", marks=pytest.mark.slow)])
@pytest.mark.parametrize("n_step", sorted(UPDATES))
def test_training_matches_the_learner_before_the_split(capture, n_step):
    torch.set_num_threads(1)
    got = run(capture, n_step)
    want = PINNED["cases"][f"{capture}_n{n_step}"]
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
    want = PINNED["cases"]["none_n1"]
    assert got["params"] != want["params"]
    assert got["params_abs_sum"] != pytest.approx(want["params_abs_sum"], rel=1e-5)
