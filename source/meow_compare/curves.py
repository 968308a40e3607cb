"""Return curves from TensorBoard logs: read a run's scalars, average seeds with a confidence band, plot.

Used by ``scripts/compare.py`` (a command) and ``tools/experiments.py`` (grid reports). A run
directory is any folder that directly holds TensorBoard event files. Runs of the baseline
libraries (rsl_rl, rl-games) are read from the scalars those libraries log, under MEow's names
(:func:`library_layout`): every run reads alike, a stopped one included.

matplotlib (:func:`plot`) and scipy (:func:`band`'s interval) are imported where they are used:
the ``compare`` extra installs them.
"""

from __future__ import annotations

import glob
import math
import re
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

_TIME_UNITS = ((120, "seconds", 1.0), (7200, "minutes", 1 / 60), (math.inf, "hours", 1 / 3600))

DEFAULT_TAGS = ("eval/return_mean", "eval/stochastic_return_mean", "charts/episodic_return")
"""Tried in order for each run when no tag is asked for: MEow's deterministic evaluation, its
stochastic evaluation (the paper's measure; alone under runner.eval_mode=stochastic), then the
training return."""


LIBRARY_TAGS = {
    "rsl_rl": {"Train/mean_reward": "charts/episodic_return", "Perf/total_fps": "charts/SPS"},
    "rl_games": {
        "rewards/step": "charts/episodic_return",
        "performance/step_inference_rl_update_fps": "charts/SPS",
    },
}
"""The scalars each library writes live (its own names) that mean MEow's training return and
throughput."""


def _setting(path: Path, key: str) -> int | None:
    """The first integer ``key: N`` of a YAML file Isaac Lab dumped (read as text: its dumps hold
    Python-specific tags that a safe YAML loader rejects)."""
    try:
        text = path.read_text()
    except OSError:
        return None
    match = re.search(rf"^\s*{re.escape(key)}:\s*(\d+)\s*$", text, flags=re.MULTILINE)
    return int(match.group(1)) if match else None


def library_layout(run: Path) -> tuple[dict[str, str], int | None] | None:
    """For a folder of TensorBoard files that rsl_rl or rl-games wrote under Isaac Lab's
    ``isaaclab train``: ``({library tag: MEow tag}, env steps per logged step)`` (None: its steps
    are env steps already); None for any other run.

    rsl_rl logs per iteration; iteration ``i`` ends at ``(i + 1) x num_steps_per_env x num_envs``
    env steps (both read from the ``params/`` Isaac Lab saves beside the logs). rl-games logs
    ``summaries/`` with env steps as x. The libraries write these while they train, so a run
    stopped at any point has its curve.
    """
    if (run / "params" / "agent.yaml").is_file():
        per_env = _setting(run / "params" / "agent.yaml", "num_steps_per_env")
        envs = _setting(run / "params" / "env.yaml", "num_envs")
        if per_env and envs:
            return LIBRARY_TAGS["rsl_rl"], per_env * envs
    if run.name == "summaries" and (run.parent / "params" / "agent.yaml").is_file():
        return LIBRARY_TAGS["rl_games"], None
    return None


class Curve(NamedTuple):
    """One scalar of one run: env steps, values and seconds since the run's first point."""

    run: Path
    tag: str
    steps: list[float]
    values: list[float]
    seconds: list[float]


def run_dirs(pattern: str) -> list[Path]:
    """Folders at or below the matches of ``pattern`` that directly hold TensorBoard event files."""
    found: set[Path] = set()
    for match in glob.glob(pattern):
        root = Path(match)
        files = [root] if root.is_file() else root.rglob("events.out.tfevents.*")
        found.update(f.parent for f in files if f.name.startswith("events.out.tfevents."))
    return sorted(found)


def _read_events_file(path: Path) -> list[tuple[str, int, float, float]]:
    """``(tag, step, wall_time, value)`` of every scalar in one TensorBoard events file."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    points = []
    for event in EventFileLoader(str(path)).Load():
        for v in event.summary.value:
            if v.HasField("simple_value"):
                value = v.simple_value
            elif v.HasField("tensor") and not v.tensor.tensor_shape.dim:
                value = tensor_util.make_ndarray(v.tensor).item()
            else:
                continue  # histograms, images, text
            points.append((v.tag, event.step, event.wall_time, float(value)))
    return points


def read_run(run: Path) -> dict[str, Curve]:
    """Every scalar of one run directory, as a curve per tag with steps ascending.

    Each events file directly in ``run`` is one session (a start or a resume), taken in order of
    its first point. A later session's points of a tag replace the earlier sessions' points of
    that tag from its first step on (what a killed session logged after its last checkpoint).
    ``seconds`` counts from the run's first point, with the time between one session's last
    point and the next session's first point left out (the pause of a stopped run).
    """
    sessions = [pts for f in sorted(run.glob("events.out.tfevents.*")) if (pts := _read_events_file(f))]
    sessions.sort(key=lambda pts: min(p[2] for p in pts))
    kept: dict[str, list[tuple[int, float, float]]] = {}
    paused, last_wall, start = 0.0, None, None
    for pts in sessions:
        first_wall = min(p[2] for p in pts)
        if last_wall is not None and first_wall > last_wall:
            paused += first_wall - last_wall
        start = first_wall if start is None else start
        last_wall = max(last_wall or first_wall, max(p[2] for p in pts))
        firsts: dict[str, int] = {}
        for tag, step, _, _ in pts:
            firsts[tag] = min(step, firsts.get(tag, step))
        for tag, first in firsts.items():
            kept[tag] = [p for p in kept.get(tag, []) if p[0] < first]
        for tag, step, wall, value in pts:
            kept[tag].append((step, wall - paused - start, value))
    curves = {}
    for tag, pts in kept.items():
        pts.sort(key=lambda p: p[0])
        curves[tag] = Curve(run, tag, [float(p[0]) for p in pts], [p[2] for p in pts], [p[1] for p in pts])
    layout = library_layout(run)
    if layout is not None:  # rsl_rl's or rl-games' own scalars, under MEow's names
        names, per_point = layout
        for theirs, ours in names.items():
            if theirs in curves and ours not in curves:
                c = curves[theirs]
                steps = c.steps if per_point is None else [(s + 1) * per_point for s in c.steps]
                curves[ours] = Curve(run, ours, steps, c.values, c.seconds)
    return curves


def read_curve(run: Path, tag: str | None) -> Curve:
    """The scalar ``tag`` (or the first of :data:`DEFAULT_TAGS`) of one run (:func:`read_run`)."""
    curves = read_run(run)
    tags = [tag] if tag else [t for t in DEFAULT_TAGS if t in curves]
    if not tags or tags[0] not in curves:
        wanted = tag or " or ".join(DEFAULT_TAGS)
        raise ValueError(f"{run} has no '{wanted}' scalars; it has: {', '.join(sorted(curves)) or 'none'}")
    curve = curves[tags[0]]
    # time from the curve's own first point, as each tag's panel always did
    return curve._replace(seconds=[t - curve.seconds[0] for t in curve.seconds])


def band(curves: list[Curve], x: str, points: int, confidence: float):
    """Grid, mean and half-width of the confidence interval of ``curves`` along ``x`` (steps|seconds)."""
    import numpy as np

    end = min(getattr(c, x)[-1] for c in curves)
    start = max(getattr(c, x)[0] for c in curves)
    # a single logged point per run gives a one-point grid
    grid = np.array([end]) if end <= start else np.linspace(start, end, points)
    ys = np.stack([np.interp(grid, getattr(c, x), c.values) for c in curves])
    mean = ys.mean(axis=0)
    n = len(curves)
    if n < 2:
        return grid, mean, None
    from scipy import stats

    t = stats.t.ppf(0.5 + confidence / 2, df=n - 1)
    return grid, mean, t * ys.std(axis=0, ddof=1) / math.sqrt(n)


def value_at(curve: Curve, x: float, axis: str) -> float | None:
    """``curve``'s value at ``x`` along ``axis`` (steps|seconds), interpolated as the plotted curve
    is; ``None`` where ``x`` lies outside the run's logged range."""
    import numpy as np

    xs = getattr(curve, axis)
    if not xs[0] <= x <= xs[-1]:
        return None
    return float(np.interp(x, xs, curve.values))


def tail_mean(curve: Curve, steps: float) -> float:
    """Mean of the values logged over the run's last ``steps`` env steps (after its last step minus
    ``steps``): a final figure less noisy than the last logged point."""
    start = curve.steps[-1] - steps
    tail = [v for s, v in zip(curve.steps, curve.values, strict=True) if s > start]
    return sum(tail) / len(tail)


def _count(x: float) -> str:
    """``2000000`` -> ``2M``, ``128000`` -> ``128k``, ``1500`` -> ``1.5k``."""
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if x >= size:
            return f"{x / size:.4g}{suffix}"
    return f"{x:.4g}"


def summary_lines(
    groups: dict[str, list[Curve]],
    at_steps: Sequence[float] = (),
    at_minutes: Sequence[float] = (),
    last_steps: float | None = None,
) -> list[str]:
    """One line per label and figure asked for: the value at each env-step count and each minute
    of wall-clock time (interpolated; runs that did not get there are left out and shown as ``-``),
    and the mean over each run's last ``last_steps`` env steps; each as mean ± sample standard
    deviation over the runs, then the runs' own values."""
    figures = [(f"at {_count(x)} env steps", lambda c, x=x: value_at(c, x, "steps")) for x in at_steps]
    figures += [(f"at {m:g} min", lambda c, m=m: value_at(c, 60.0 * m, "seconds")) for m in at_minutes]
    if last_steps is not None:
        name = f"mean over the last {_count(last_steps)} env steps"
        figures.append((name, lambda c: tail_mean(c, last_steps)))
    lines = []
    for label, curves in groups.items():
        for name, figure in figures:
            values = [figure(c) for c in curves]
            got = [v for v in values if v is not None]
            runs = ", ".join("-" if v is None else f"{v:.1f}" for v in values)
            if not got:
                lines.append(f"{label}: {name}: no run got there (per run: {runs})")
                continue
            if len(got) == 1:
                lines.append(f"{label}: {name}: {got[0]:.1f} (one run; per run: {runs})")
            else:
                text = f"{statistics.mean(got):.1f} ± {statistics.stdev(got):.1f}"
                lines.append(f"{label}: {name}: {text} (mean ± sd over {len(got)} runs; per run: {runs})")
    return lines


def plot(
    groups: dict[str, list[Curve]],
    out: Path,
    confidence: float = 0.95,
    points: int = 200,
    title: str | None = None,
) -> None:
    """Draws ``{label: curves of its seeds}`` into the PNG ``out``: return vs env steps and vs
    wall-clock time, mean and ``confidence`` band over seeds; prints one summary line per label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_steps, ax_time) = plt.subplots(1, 2, figsize=(12, 4.5))
    tags = sorted({c.tag for curves in groups.values() for c in curves})
    longest = max(c.seconds[-1] for curves in groups.values() for c in curves)
    unit, per_second = next((u, f) for limit, u, f in _TIME_UNITS if longest < limit)
    for label, curves in groups.items():
        for ax, x, scale in ((ax_steps, "steps", 1.0), (ax_time, "seconds", per_second)):
            grid, mean, half = band(curves, x, points, confidence)
            (line,) = ax.plot(grid * scale, mean, label=f"{label} (n={len(curves)})")
            if half is not None:
                ax.fill_between(grid * scale, mean - half, mean + half, color=line.get_color(), alpha=0.2)
        final = [c.values[-1] for c in curves]
        mean_final = sum(final) / len(final)
        print(
            f"[compare] {label}: {len(curves)} run(s), {', '.join(sorted({c.tag for c in curves}))}, "
            f"final {mean_final:.1f} (per run: {', '.join(f'{v:.1f}' for v in final)})"
        )
    band_note = f"mean and {confidence:.0%} CI over seeds"
    ax_steps.set(xlabel="env steps", ylabel=" / ".join(tags), title=f"return vs env steps ({band_note})")
    ax_time.set(xlabel=f"wall-clock {unit}", ylabel=" / ".join(tags), title="return vs wall-clock time")
    for ax in (ax_steps, ax_time):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    print(f"[compare] wrote {out}")
