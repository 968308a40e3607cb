"""scripts/compare.py draws curves with seed bands from real training logs."""

from __future__ import annotations

from pathlib import Path

import pytest
from script_loader import load_script

from meow.utils.curves import band, read_curve, run_dirs

ROOT = Path(__file__).resolve().parents[2]


train, compare = load_script("train"), load_script("compare")
SMALL = ["runner.progress=false", "runner.warmup_steps=64", "algo.batch_size=32", "buffer.capacity=2000"]
SMALL += ["env.eval_envs=2", "runner.eval_interval=100", "runner.log_interval=50", "--total_steps", "300"]


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """Two 'methods' (alpha 2.5 and 0.5) with two seeds each, on the multi-goal task."""
    root = tmp_path_factory.mktemp("compare")
    for name, alpha in (("a", 2.5), ("b", 0.5)):
        for seed in (1, 2):
            args = ["--task", "MultiGoal", "--seed", str(seed), f"algo.alpha={alpha}"]
            assert train.main([*args, f"runner.log_dir={root / name}", *SMALL]) == 0
    return root


def test_plots_two_methods_with_seed_bands(logs, tmp_path, capsys):
    out = tmp_path / "plots" / "cmp.png"
    pattern = "meow/MultiGoal/*"
    assert (
        compare.main(
            [f"alpha 2.5={logs / 'a' / pattern}", f"alpha 0.5={logs / 'b' / pattern}", "--out", str(out)]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "alpha 2.5: 2 run(s), eval/return_mean" in text and "alpha 0.5: 2 run(s)" in text
    import matplotlib.image

    image = matplotlib.image.imread(out)
    assert image.shape[0] > 300 and image.shape[1] > 800 and image.std() > 0.01  # a drawn figure


def test_band_is_the_t_interval_of_the_mean(logs):
    import numpy as np

    curves = [read_curve(run, "eval/return_mean") for run in run_dirs(str(logs / "a" / "meow/MultiGoal/*"))]
    assert len(curves) == 2
    grid, mean, half = band(curves, "steps", 5, 0.95)
    ys = np.stack([np.interp(grid, c.steps, c.values) for c in curves])
    np.testing.assert_allclose(mean, ys.mean(0))
    np.testing.assert_allclose(half, 12.706204736 * ys.std(0, ddof=1) / np.sqrt(2), rtol=1e-6)  # t(0.975, 1)


def test_errors_name_the_pattern_and_the_tags(logs, tmp_path, capsys):
    assert compare.main([str(tmp_path / "nothing*"), "--out", str(tmp_path / "x.png")]) == 2
    assert "matches no folder with TensorBoard event files" in capsys.readouterr().err
    assert compare.main([str(logs / "a"), "--tag", "charts/nope", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "has no 'charts/nope' scalars; it has:" in err and "eval/return_mean" in err


def test_the_stochastic_evaluation_is_a_known_tag(logs, tmp_path, capsys):
    with pytest.raises(SystemExit):
        compare.parse_args(["--help"])
    assert "eval/stochastic_return_mean" in " ".join(capsys.readouterr().out.split())
    run = run_dirs(str(logs / "a" / "meow/MultiGoal/*"))[0]
    curve = read_curve(run, "eval/stochastic_return_mean")
    assert curve.steps == [100.0, 200.0, 300.0]
    assert curve.values != read_curve(run, "eval/return_mean").values
    # a run that evaluates sampled actions only: the default picks that curve, not the training return
    only = tmp_path / "stochastic"
    argv = ["--task", "MultiGoal", f"runner.log_dir={only}", "runner.eval_mode=stochastic", *SMALL]
    assert train.main(argv) == 0
    (run,) = run_dirs(str(only / "meow/MultiGoal/*"))
    assert read_curve(run, None).tag == "eval/stochastic_return_mean"
