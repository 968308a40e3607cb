"""scripts/compare.py draws curves with seed bands from real training logs."""

from __future__ import annotations

from pathlib import Path

import pytest
from script_loader import load_script

from meow_compare.curves import Curve, band, read_curve, run_dirs, summary_lines, tail_mean, value_at

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


def test_summary_reads_the_curves_at_steps_minutes_and_over_the_last_steps():
    a = Curve(Path("a"), "r", [0.0, 100.0, 200.0, 300.0], [0.0, 10.0, 20.0, 30.0], [0.0, 60.0, 120.0, 180.0])
    b = Curve(Path("b"), "r", [0.0, 100.0, 200.0], [0.0, 20.0, 40.0], [0.0, 30.0, 60.0])
    assert value_at(a, 150.0, "steps") == 15.0 and value_at(b, 45.0, "seconds") == 30.0
    assert value_at(b, 250.0, "steps") is None  # b stopped at 200
    assert tail_mean(a, 150.0) == 25.0 and tail_mean(b, 150.0) == 30.0  # steps after 150 and after 50
    lines = summary_lines({"A": [a, b]}, at_steps=[150.0, 250.0, 1e6], at_minutes=[1.0], last_steps=150.0)
    assert lines == [
        "A: at 150 env steps: 22.5 ± 10.6 (mean ± sd over 2 runs; per run: 15.0, 30.0)",
        "A: at 250 env steps: 25.0 (one run; per run: 25.0, -)",
        "A: at 1M env steps: no run got there (per run: -, -)",
        "A: at 1 min: 25.0 ± 21.2 (mean ± sd over 2 runs; per run: 10.0, 40.0)",
        "A: mean over the last 150 env steps: 27.5 ± 3.5 (mean ± sd over 2 runs; per run: 25.0, 30.0)",
    ]
    assert summary_lines({"A": [a, b]}) == []  # nothing asked, nothing printed


def test_compare_prints_the_asked_figures_of_real_runs(logs, tmp_path, capsys):
    out = tmp_path / "t.png"
    pattern = str(logs / "a" / "meow/MultiGoal/*")
    argv = [f"A={pattern}", "--at_steps", "200", "--last_steps", "150", "--out", str(out)]
    assert compare.main(argv) == 0
    text = capsys.readouterr().out
    curves = [read_curve(run, None) for run in run_dirs(pattern)]
    at_200 = [c.values[c.steps.index(200.0)] for c in curves]  # evaluations at 100, 200, 300
    last = [(c.values[-2] + c.values[-1]) / 2 for c in curves]  # at 200 and 300, after 300 - 150
    for name, values in (("at 200 env steps", at_200), ("mean over the last 150 env steps", last)):
        mean = sum(values) / 2
        assert f"A: {name}: {mean:.1f} ± " in text, text
        assert f"per run: {', '.join(f'{v:.1f}' for v in values)})" in text


@pytest.mark.parametrize("flag", ["--at_steps", "--at_minutes", "--last_steps"])
def test_summary_flags_refuse_what_is_not_a_positive_number(flag, tmp_path, capsys):
    for bad in ("-5", "0", "nan", "two"):
        with pytest.raises(SystemExit) as stop:
            compare.parse_args([str(tmp_path), flag, bad, "--out", str(tmp_path / "x.png")])
        assert stop.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and flag in err and "a finite number > 0" in err, err
