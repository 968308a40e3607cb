"""Plot return curves of several runs from their TensorBoard logs: mean and confidence band over seeds.

    python scripts/compare.py logs/meow/Hopper-v5/*                      # one curve, the seeds averaged
    python scripts/compare.py "MEow=logs/meow/Hopper-v5/*" "no LRS=logs/ablation/Hopper-v5/*" --out hopper.png
    python scripts/compare.py "MEow=logs/meow/Isaac-Ant/*" --tag charts/episodic_return
    python scripts/compare.py logs/meow/Hopper-v5/* --tag eval/stochastic_return_mean   # as the paper
    python scripts/compare.py "MEow=logs/meow/Isaac-Ant/*" "PPO=logs/rsl_rl/ant/*" --at_minutes 20 39

Each positional argument is ``[LABEL=]PATTERN``: a run directory, or a glob of run directories
(the seeds of one method); a run directory is any folder that holds TensorBoard event files,
searched recursively. Without a label the pattern is the label. Draws two panels into a PNG:
return against env steps and against wall-clock time since each run's first logged point.

Runs of ``--algo ppo`` (rsl_rl) and ``--algo sac`` on Isaac tasks (rl-games) are read from the
scalars those libraries log as they train, mapped to MEow's names (``charts/episodic_return``,
``charts/SPS``; rsl_rl's iterations turned into env steps).

A run resumed in its own directory (``train.py --resume DIR --run_dir DIR``) holds one events
file per session; they are read as one curve: points that a session logged after the checkpoint
the next one resumed from (work redone after a kill) are dropped, and the pause between a stop
and its resume is cut out of the wall-clock axis.
Curves of one label are interpolated onto a common grid up to the shortest run; the band is a
confidence interval of the mean over seeds (Student t; none for a single seed).
``--at_steps``, ``--at_minutes`` and ``--last_steps`` also print, per label, the value at given
env steps and minutes (read off the interpolated curves) and the mean over each run's last N env
steps, as mean ± sd over its runs with each run's value.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from meow.utils.cli import ArgumentParser, at_least, positive_number
from meow_compare.curves import DEFAULT_TAGS, Curve, plot, read_curve, run_dirs, summary_lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="[LABEL=]PATTERN", help="run directories or globs of them")
    parser.add_argument(
        "--tag",
        help="scalar to plot, e.g. eval/return_mean (deterministic evaluation), "
        "eval/stochastic_return_mean (sampled actions, as the paper measured), charts/episodic_return "
        "(training), eval/value_error (the flow's V(s0) minus the soft return earned); default: the "
        f"first of {', '.join(DEFAULT_TAGS)} a run has",
    )
    parser.add_argument("--out", default="compare.png", help="PNG file to write (default compare.png)")
    parser.add_argument("--confidence", type=float, default=0.95, help="confidence level of the band")
    parser.add_argument("--points", type=at_least(2), default=200, help="grid points per curve")
    parser.add_argument("--title", help="figure title")
    for flag, metavar, where in (
        ("--at_steps", "N", "env steps (e.g. 1e6 2e6)"),
        ("--at_minutes", "M", "minutes of wall-clock time (e.g. 10 20 39)"),
    ):
        parser.add_argument(
            flag,
            nargs="+",
            type=positive_number,
            default=[],
            metavar=metavar,
            help=f"also print each label's value at these {where}: mean ± sd over its runs",
        )
    parser.add_argument(
        "--last_steps",
        type=positive_number,
        metavar="N",
        help="also print each label's mean over each run's last N env steps (e.g. 128000), a final "
        "figure less noisy than the last logged point",
    )
    args = parser.parse_args(argv)
    if not 0 < args.confidence < 1:
        parser.error(f"--confidence {args.confidence} is invalid; valid: a number in (0, 1)")
    if Path(args.out).suffix.lower() != ".png":
        parser.error(f"--out {args.out} is invalid; valid: a path ending in .png")
    from meow.utils.io import check_creatable_dir

    try:
        check_creatable_dir(Path(args.out).parent, "--out's folder")
    except ValueError as err:
        parser.error(str(err))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    groups: dict[str, list[Curve]] = {}
    try:
        for item in args.runs:
            label, _, pattern = item.partition("=") if "=" in item else (item, "", item)
            runs = run_dirs(pattern)
            if not runs:
                raise ValueError(f"'{pattern}' matches no folder with TensorBoard event files")
            groups.setdefault(label, []).extend(read_curve(run, args.tag) for run in runs)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    plot(groups, Path(args.out), args.confidence, args.points, args.title)
    for line in summary_lines(groups, args.at_steps, args.at_minutes, args.last_steps):
        print(f"[compare] {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
