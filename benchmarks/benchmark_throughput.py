"""Training-loop throughput: MEow's OffPolicyRunner against Stable-Baselines3's SAC.

    python benchmarks/benchmark_throughput.py                          # Hopper-v5, 3000 timed steps
    python benchmarks/benchmark_throughput.py --repeats 3 --threads 1
    python benchmarks/benchmark_throughput.py --compile --repeats 1 --out bench.json
    python benchmarks/benchmark_throughput.py --compile algo.q_dropout=shared      # MEow config overrides
    python benchmarks/benchmark_throughput.py --compile --flops     # and each step's matrix-product floor
    python benchmarks/benchmark_throughput.py --compile --against algo.preset=paper   # A/B in one run

Both contenders run one environment and one gradient update of batch 256 per env step,
on the config's device, with the same torch thread count, in this one process. Each first
takes --warmup random-action steps and --burnin learning steps untimed (this absorbs
torch.compile's compilation), then --steps learning steps are timed; env-steps/s is that
timed part only. MEow runs the paper architecture (config/meow.yaml + tasks/) through the
real OffPolicyRunner; SAC runs SB3's defaults ([256, 256] nets, automatic entropy
coefficient) with buffer 1e6, train_freq 1, gradient_steps 1 and learning_starts = --warmup.
The contenders alternate (order reversed every other round) for --repeats rounds.
With --against KEY=VALUE (repeatable) a further MEow contender runs the same loop with those
overrides on top of the others (compiled when --compile is given), in the same rounds: an A/B of
two MEow configurations against one SAC baseline measured in the same run, with the ratio of the
MEow under test to it. With --flops the script then counts the matrix-product FLOPs of one
learning step of each (one update and one sampled action, eager, torch.utils.flop_counter), times this core's
256x256x256 single-precision matrix product, and prints each contender's floor: the time its
matrix products alone would take at that rate, beside its measured time per step.
SB3 is an optional dependency: pip install stable-baselines3 (or the `baselines` extra).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import torch

from meow.utils.cli import ArgumentParser, at_least

MEOW, MEOW_COMPILED, SB3 = "MEow (ours)", "MEow (ours, compiled)", "SB3 SAC"
AGAINST = "MEow (--against)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="Hopper-v5", help="Gymnasium task id or alias (see tasks/)")
    parser.add_argument(
        "--steps", type=at_least(1), default=3000, help="timed learning env steps per measurement"
    )
    parser.add_argument(
        "--warmup", type=at_least(0), default=1000, help="random-action env steps before learning"
    )
    parser.add_argument(
        "--burnin", type=at_least(0), default=250, help="untimed learning steps after the warm-up"
    )
    parser.add_argument(
        "--threads", type=at_least(1), help="torch intra-op threads for both (default: torch's)"
    )
    parser.add_argument("--repeats", type=at_least(1), default=1, help="rounds of alternating measurements")
    parser.add_argument("--compile", action="store_true", help="also time MEow with algo.capture=compile")
    parser.add_argument(
        "--against",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="time a further MEow contender with these overrides on top (repeatable; the A/B baseline)",
    )
    parser.add_argument(
        "--flops", action="store_true", help="also count each step's matrix-product FLOPs and floor"
    )
    parser.add_argument("--out", type=Path, help="write the results to this JSON file")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="MEow config overrides")
    args = parser.parse_intermixed_args(argv)
    if args.out is not None:
        from meow.utils.io import check_creatable_dir

        try:
            check_creatable_dir(args.out.parent, "--out's folder")
        except ValueError as err:
            parser.error(str(err))
    if args.warmup + args.burnin < 256:
        parser.error("--warmup + --burnin must be at least 256 (one batch) so timing starts mid-learning")
    return args


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, with the cores this process may use."""
    name = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            name = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), name)
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{name} ({cores} cores)"


def measure(
    untimed: Callable[[], object], timed: Callable[[], object], counters: Callable[[], tuple]
) -> dict:
    """Runs ``untimed``, then times ``timed``; ``counters()`` gives (env steps, updates) so far."""
    t0 = time.perf_counter()
    untimed()
    t1 = time.perf_counter()
    steps0, updates0 = counters()
    timed()
    t2 = time.perf_counter()
    steps, updates = (now - before for now, before in zip(counters(), (steps0, updates0), strict=True))
    return {"sps": steps / (t2 - t1), "updates_per_step": updates / steps, "untimed_s": t1 - t0}


def meow_overrides(
    args: argparse.Namespace, capture: str, warmup: int, total: int, extra: list[str] = ()
) -> list[str]:
    """Pinned to the comparable setup; the architecture stays the config's (the paper's)."""
    return [
        f"torch_threads={args.threads}",
        *("env.num_envs=1", "env.eval_envs=0", "buffer.capacity=1000000", "runner.progress=false"),
        *("algo.batch_size=256", "algo.updates_per_step=1", f"algo.capture={capture}"),
        f"runner.warmup_steps={warmup}",
        f"runner.total_steps={total}",
        *args.overrides,
        *extra,
    ]


def meow_runner(args: argparse.Namespace, capture: str, warmup: int, total: int, extra: list[str] = ()):
    """Our OffPolicyRunner in the comparable setup, and its env (the caller closes it)."""
    from meow.config import load_config
    from meow.envs import make_env
    from meow.runners import OffPolicyRunner

    cfg = load_config(args.task, meow_overrides(args, capture, warmup, total, extra))
    env = make_env(cfg.env.kind, cfg.env.id, cfg.env.num_envs, cfg.device, cfg.env.kwargs)
    return OffPolicyRunner(cfg, env, eval_env=None, log_dir=None), env


def sb3_sac(args: argparse.Namespace, learning_starts: int):
    """SB3's SAC in the comparable setup on the same env id, kwargs, seed and device as ours, and
    its vectorized env (the caller closes it)."""
    from stable_baselines3 import SAC
    from stable_baselines3.common.env_util import make_vec_env

    from meow.config import load_config

    cfg = load_config(args.task)
    env = make_vec_env(cfg.env.id, n_envs=1, seed=cfg.seed, env_kwargs=dict(cfg.env.kwargs))
    model = SAC(
        "MlpPolicy",
        env,
        buffer_size=1_000_000,
        learning_starts=learning_starts,
        batch_size=256,
        train_freq=1,
        gradient_steps=1,
        seed=cfg.seed,
        device=cfg.device,
    )
    return model, env


def time_meow(args: argparse.Namespace, compile: bool, extra: list[str] = ()) -> dict[str, float]:
    """One measurement of our OffPolicyRunner: env-steps/s, updates per step, untimed seconds."""
    untimed = args.warmup + args.burnin
    runner, env = meow_runner(args, "compile" if compile else "none", args.warmup, untimed, extra)
    cfg = runner.cfg

    def timed() -> None:
        cfg.runner.total_steps = untimed + args.steps
        runner.learn()

    try:
        return measure(runner.learn, timed, lambda: (runner.global_step, runner.num_updates))
    finally:
        env.close()


def time_sb3(args: argparse.Namespace) -> dict[str, float]:
    """One measurement of Stable-Baselines3's SAC in the comparable setup."""
    model, env = sb3_sac(args, args.warmup)
    try:
        # With reset_num_timesteps=False, SB3 runs total_timesteps more steps than it has taken.
        return measure(
            lambda: model.learn(args.warmup + args.burnin, reset_num_timesteps=False),
            lambda: model.learn(args.steps, reset_num_timesteps=False),
            lambda: (model.num_timesteps, model._n_updates),
        )
    finally:
        env.close()


def count_flops(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Matrix-product FLOPs of one learning step of each contender: an update and an action."""
    from torch.utils.flop_counter import FlopCounterMode

    def flops(fn: Callable[[], object]) -> int:
        with FlopCounterMode(display=False) as counter:
            fn()
        return counter.get_total_flops()

    start = max(args.warmup, 256)  # a batch stored, then one update: eager, the timed setup
    runner, env = meow_runner(args, "none", start, start + 1)
    try:
        runner.learn()
        obs = runner.buffer.sample(1).obs
        meow = {
            "update": flops(lambda: runner.alg.update_from(runner.buffer, 256)),
            "act": flops(lambda: runner.alg.act(obs)),
        }
    finally:
        env.close()
    model, vec = sb3_sac(args, 256)
    try:
        model.learn(257)
        first = vec.reset()
        sac = {
            "update": flops(lambda: model.train(gradient_steps=1, batch_size=256)),
            "act": flops(lambda: model.predict(first, deterministic=False)),
        }
    finally:
        vec.close()
    return {MEOW: meow, SB3: sac}


def gemm_gflops(repeats: int = 400) -> float:
    """This core's single-precision rate on a 256x256 by 256x256 matrix product (GFLOP/s, median)."""
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    for _ in range(50):
        torch.mm(a, b)
    rates = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b)
        rates.append(2 * 256**3 * repeats / (time.perf_counter() - t0) / 1e9)
    return statistics.median(rates)


def floors(counts: dict[str, dict[str, float]], gflops: float, results: dict[str, dict]) -> dict:
    """Each contender's matrix-product floor per step beside its measured time per step."""
    table = {}
    for name, res in results.items():
        if name == AGAINST:  # its overrides may change the products: not counted
            continue
        count = counts[SB3 if name == SB3 else MEOW]  # compiling changes no FLOP
        step = count["update"] + count["act"]
        floor_ms = step / gflops / 1e6
        measured_ms = 1000.0 / res["median"]
        table[name] = {
            "update_flops": count["update"],
            "act_flops": count["act"],
            "floor_ms": floor_ms,
            "measured_ms": measured_ms,
            "floor_share": floor_ms / measured_ms,
        }
    return table


def print_floors(gflops: float, table: dict) -> None:
    print(f"\nmatrix products per learning step at this core's 256^3 rate, {gflops:.1f} GFLOP/s:")
    print(f"{'contender':<24}{'MFLOP/step':>12}{'floor ms':>10}{'measured ms':>13}{'share':>8}")
    for name, row in table.items():
        mflop = (row["update_flops"] + row["act_flops"]) / 1e6
        print(
            f"{name:<24}{mflop:>12.1f}{row['floor_ms']:>10.2f}{row['measured_ms']:>13.2f}"
            f"{row['floor_share']:>8.0%}"
        )
    print("(floor = the step's matrix-product FLOPs at that rate; share = floor / measured time)")


def summarize(runs: dict[str, list[dict[str, float]]]) -> dict[str, dict]:
    """Median, min and max env-steps/s of each contender, and its ratio to SB3 SAC's (and to the
    --against contender's, when there is one): of the medians and per repeat."""
    bases = {"sb3": runs[SB3], **({"against": runs[AGAINST]} if AGAINST in runs else {})}
    results = {}
    for name, rs in runs.items():
        sps = [run["sps"] for run in rs]
        results[name] = {"sps": sps, "median": statistics.median(sps), "min": min(sps), "max": max(sps)}
        for key, base in bases.items():
            base_sps = [run["sps"] for run in base]
            results[name][f"ratio_vs_{key}"] = statistics.median(sps) / statistics.median(base_sps)
            results[name][f"ratio_vs_{key}_per_repeat"] = [a / b for a, b in zip(sps, base_sps, strict=True)]
        results[name]["updates_per_step"] = [run["updates_per_step"] for run in rs]
        results[name]["untimed_s"] = [run["untimed_s"] for run in rs]
    return results


def print_table(info: dict, results: dict[str, dict]) -> None:
    print(
        f"\n{info['task']} on {info['cpu']} | torch {info['torch']} | {info['threads']} thread(s) | "
        f"{info['date']} | load average {info['loadavg_start']:.1f} -> {info['loadavg_end']:.1f}"
    )
    print(f"{'contender':<24}{'median':>10}{'min':>10}{'max':>10}   vs SB3 SAC (per repeat)")
    for name, res in results.items():
        per = ", ".join(f"{x:.2f}" for x in res["ratio_vs_sb3_per_repeat"])
        print(
            f"{name:<24}{res['median']:>10.1f}{res['min']:>10.1f}{res['max']:>10.1f}   "
            f"{res['ratio_vs_sb3']:.2f}x ({per})"
        )
    print("(env-steps/s of the timed learning steps; ratio = median / SB3 SAC's median)")
    if AGAINST in results:
        print(f"A/B against {AGAINST} ({' '.join(info['against'])}), measured in the same rounds:")
        for name, res in results.items():
            if name not in (SB3, AGAINST):
                per = ", ".join(f"{x:.2f}" for x in res["ratio_vs_against_per_repeat"])
                print(f"{name:<24}{res['ratio_vs_against']:>10.2f}x ({per})")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from meow.config import ConfigError, load_config

    try:
        if load_config(args.task, [*args.overrides, *args.against]).env.kind != "gymnasium":
            raise ConfigError(
                f"--task {args.task} is invalid; valid: a Gymnasium task (SB3 SAC runs on those)"
            )
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        import stable_baselines3
    except ImportError:
        print(
            "error: the SB3 SAC baseline needs stable-baselines3: pip install stable-baselines3 "
            "(or pip install -e '.[baselines]')",
            file=sys.stderr,
        )
        return 2
    args.threads = args.threads or torch.get_num_threads()
    contenders = {MEOW: lambda: time_meow(args, False), SB3: lambda: time_sb3(args)}
    if args.compile:
        contenders[MEOW_COMPILED] = lambda: time_meow(args, True)
    if args.against:
        contenders[AGAINST] = lambda: time_meow(args, args.compile, args.against)
    keys = ("task", "steps", "warmup", "burnin", "repeats", "threads", "overrides", "against")
    info = {k: getattr(args, k) for k in keys}
    info |= {
        "torch": torch.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "cpu": cpu_model(),
        "date": datetime.now().isoformat(timespec="seconds"),
        # Other processes competing for the cores distort the figures: keep a record of them.
        "loadavg_start": os.getloadavg()[0],
    }
    print(
        f"[bench] {args.task} | {args.steps} timed steps after {args.warmup} warm-up + {args.burnin} "
        f"burn-in | {args.repeats} repeat(s) | torch {info['torch']} | threads {args.threads}"
    )
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in contenders}
    for r in range(args.repeats):
        for name in list(contenders)[:: 1 if r % 2 == 0 else -1]:  # reversed order every other round
            torch.set_num_threads(args.threads)
            run = contenders[name]()
            if torch.get_num_threads() != args.threads:
                raise RuntimeError(f"{name} changed torch's thread count to {torch.get_num_threads()}")
            runs[name].append(run)
            print(
                f"[bench] repeat {r + 1}/{args.repeats} {name:<22} {run['sps']:8.1f} env-steps/s "
                f"({run['updates_per_step']:.2f} updates/step, {run['untimed_s']:.1f} s untimed)"
            )
    info["loadavg_end"] = os.getloadavg()[0]
    results = summarize(runs)
    print_table(info, results)
    extra = {}
    if args.flops:
        torch.set_num_threads(args.threads)
        gflops = gemm_gflops()
        extra = {"gemm_gflops": gflops, "floors": floors(count_flops(args), gflops, results)}
        print_floors(gflops, extra["floors"])
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**info, "results": results, **extra}, indent=2) + "\n")
        print(f"[bench] wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
