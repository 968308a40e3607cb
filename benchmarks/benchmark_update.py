"""Milliseconds per MEow update by capture mode and batch size, beside the floor, and the pipeline ceiling.

    python benchmarks/benchmark_update.py                                  # this machine's GPU, else CPU
    python benchmarks/benchmark_update.py --device cpu --threads 1 --batches 256,1024,4096
    python benchmarks/benchmark_update.py --pipeline --num_envs 4096 --out update.json

The table: for each batch size, one full update (sampling from a device-resident replay buffer,
loss, backward, grad-norm clip, Adam, Polyak) in every capture mode, and the floor, a bare
forward and backward of the same loss on a batch already gathered, with no optimizer. Modes:
none (eager), compile (torch.compile, default mode), compile-reduce-overhead (torch.compile's
CUDA-graph mode; CUDA only) and cudagraph (the update recorded as one CUDA graph; CUDA only).
Every cell is timed in this process, after warm-up (compilation and capture are reported apart),
with the device synchronised around the timed loop.

--pipeline: the whole training loop (act, env step, buffer, updates, logging) at Isaac-Ant's
shapes and large-env settings on a synthetic GPU-resident environment whose step costs almost
nothing: MEow's own ceiling in env-steps/s, per capture mode. It takes Isaac-Ant's task file
from the installed meow_isaac package (docs/GPU.md#air-gapped-install).

--matmul_precision tf32 runs float32 matrix products as TF32 on tensor cores, as training does
with algo.matmul_precision=tf32 (default float32, the paper's and training's default);
--profile_batch B (CUDA) prints where an eager update's GPU time goes at batch B, kernel by kernel.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

MODES = ("none", "compile", "compile-reduce-overhead", "cudagraph")
CUDA_ONLY = ("compile-reduce-overhead", "cudagraph")


def _positive_ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is invalid; valid: comma-separated integers >= 1")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from meow.utils.cli import ArgumentParser

    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--device", default="auto", help="auto (the GPU when there is one), cpu, cuda, cuda:N"
    )
    parser.add_argument("--batches", type=_positive_ints, default=[256, 1024, 4096, 16384, 32768])
    parser.add_argument(
        "--modes", default=None, help=f"comma-separated, from {', '.join(MODES)} (default: all that run here)"
    )
    parser.add_argument(
        "--compile_batches",
        type=_positive_ints,
        default=None,
        help="batch sizes at which the compile modes are timed (default: all)",
    )
    parser.add_argument("--obs_dim", type=int, default=60, help="observation size (Isaac-Ant's 60)")
    parser.add_argument("--action_dim", type=int, default=8, help="action size (Isaac-Ant's 8)")
    parser.add_argument("--n_step", type=int, default=1)
    parser.add_argument(
        "--seconds", type=float, default=None, help="timed seconds per cell (default 1 on GPU, 2 on CPU)"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 keeps torch's)")
    parser.add_argument("--pipeline", action="store_true", help="also measure the whole training loop")
    parser.add_argument("--pipeline_only", action="store_true", help="only the whole training loop")
    parser.add_argument("--num_envs", type=int, default=4096, help="--pipeline: parallel envs")
    parser.add_argument("--pipeline_steps", type=int, default=200, help="--pipeline: timed vectorized steps")
    parser.add_argument(
        "--matmul_precision",
        default="float32",
        help="float32 | tf32 (CUDA): how float32 matrix products run, as algo.matmul_precision",
    )
    parser.add_argument(
        "--profile_batch",
        type=int,
        default=0,
        help="also record 20 eager updates of this batch under torch.profiler and print the top kernels",
    )
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="--pipeline: settings over Isaac-Ant's, e.g. algo.n_step=3",
    )
    args = parser.parse_args(argv)
    from meow.config import ConfigError, check_device

    if args.device == "auto":
        args.device = "cuda:0" if torch.cuda.is_available() else "cpu"
    try:
        device = check_device(args.device)
    except ConfigError as err:
        parser.error(str(err))
    cuda = device.type == "cuda"
    modes = args.modes.split(",") if args.modes else [m for m in MODES if cuda or m not in CUDA_ONLY]
    for mode in modes:
        if mode not in MODES:
            parser.error(f"--modes {mode} is invalid; valid: {', '.join(MODES)}")
        if mode in CUDA_ONLY and not cuda:
            parser.error(f"--modes {mode} needs CUDA; valid on the CPU: none, compile")
    args.modes = modes
    from meow.algorithms.capture import MATMUL_PRECISIONS

    if args.matmul_precision not in MATMUL_PRECISIONS:
        parser.error(
            f"--matmul_precision {args.matmul_precision} is invalid; valid: {', '.join(MATMUL_PRECISIONS)}"
        )
    if args.matmul_precision == "tf32" and not cuda:
        parser.error(
            "--matmul_precision tf32 needs CUDA (TF32 runs on its tensor cores); valid on the CPU: float32"
        )
    if args.profile_batch < 0:
        parser.error(
            f"--profile_batch {args.profile_batch} is invalid; valid: an integer >= 1, or 0 for none"
        )
    if args.profile_batch and not cuda:
        parser.error("--profile_batch needs CUDA; on the CPU, benchmarks/profile_loop.py profiles the update")
    for name in ("obs_dim", "action_dim", "n_step", "num_envs", "pipeline_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} {getattr(args, name)} is invalid; valid: an integer >= 1")
    if args.seconds is None:
        args.seconds = 1.0 if cuda else 2.0
    if args.seconds <= 0:
        parser.error(f"--seconds {args.seconds} is invalid; valid: a number > 0")
    if args.threads < 0:
        parser.error(f"--threads {args.threads} is invalid; valid: an integer >= 0")
    args.pipeline = args.pipeline or args.pipeline_only
    if any(o.split("=", 1)[0].endswith("algo.matmul_precision") for o in args.overrides):
        parser.error(
            "algo.matmul_precision is set here with --matmul_precision (the table and the pipeline share it)"
        )
    if args.overrides:
        from meow.config import load_config

        try:  # checked here, before anything is timed
            load_config("Isaac-Ant", ["device=cpu", "algo.capture=none", *args.overrides])
        except ConfigError as err:
            parser.error(str(err))
    return args


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_ms(fn: Callable[[], object], device: torch.device, seconds: float, min_reps: int = 3) -> float:
    """Mean milliseconds per call over at least ``min_reps`` calls and about ``seconds``."""
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    once = time.perf_counter() - start
    reps = max(min_reps, int(seconds / max(once, 1e-6)))
    _sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / reps * 1000.0


def _learner(args: argparse.Namespace, device: torch.device, mode: str):
    from meow.algorithms import MEow
    from meow.modules import EmpiricalNormalization, FlowPolicy

    torch.manual_seed(0)
    policy = FlowPolicy(args.obs_dim, args.action_dim, alpha=0.05, log_sigma_min=-5.0, log_sigma_max=2.0)
    capture = "compile" if mode.startswith("compile") else mode
    compile_mode = "reduce-overhead" if mode == "compile-reduce-overhead" else None
    if capture == "compile":
        torch._dynamo.reset()  # a fresh cache: no recompilation limit carried over from other cells
    normalizer = EmpiricalNormalization(args.obs_dim).to(device)
    return MEow(
        policy.to(device),
        normalizer,
        n_step=args.n_step,
        capture=capture,
        compile_mode=compile_mode,
        matmul_precision=args.matmul_precision,
    )


def _buffer(args: argparse.Namespace, device: torch.device):
    from meow.storage import ReplayBuffer

    num_envs, steps = 1024, 64
    buf = ReplayBuffer(num_envs * steps, num_envs, args.obs_dim, args.action_dim, device, verbose=False)
    g = torch.Generator(device=device).manual_seed(0)
    for _ in range(steps):
        buf.add(
            torch.randn(num_envs, args.obs_dim, device=device, generator=g),
            torch.rand(num_envs, args.action_dim, device=device, generator=g) * 2 - 1,
            torch.randn(num_envs, device=device, generator=g),
            torch.randn(num_envs, args.obs_dim, device=device, generator=g),
            (torch.rand(num_envs, device=device, generator=g) < 0.01).float(),
            torch.rand(num_envs, device=device, generator=g) < 0.01,
        )
    return buf


def update_table(args: argparse.Namespace) -> list[dict]:
    """One row per batch size: ms per update of every mode, the floor, and first-call seconds."""
    device = torch.device(args.device)
    buf = _buffer(args, device)
    rows = []
    for batch in args.batches:
        row: dict = {"batch": batch, "ms": {}, "first_call_s": {}}
        alg = _learner(args, device, "none")
        windows = buf.sample_windows(batch, args.n_step)

        def floor(alg=alg, windows=windows) -> None:
            alg.policy.train()
            loss, _ = alg.loss(windows)
            alg.policy.zero_grad(set_to_none=True)
            loss.backward()

        row["ms"]["floor"] = _time_ms(floor, device, args.seconds)
        if device.type == "cuda":  # the same forward and backward with no launch overhead
            row["ms"]["floor-captured"] = _time_ms(_captured(floor, device), device, args.seconds)
        for mode in args.modes:
            if mode.startswith("compile") and args.compile_batches and batch not in args.compile_batches:
                continue
            alg = _learner(args, device, mode)
            _sync(device)
            start = time.perf_counter()
            for _ in range(3):  # compilation, capture, warm-up
                alg.update_from(buf, batch)
            _sync(device)
            row["first_call_s"][mode] = round(time.perf_counter() - start, 3)
            row["ms"][mode] = _time_ms(
                lambda alg=alg, batch=batch: alg.update_from(buf, batch), device, args.seconds
            )
        rows.append(row)
        print("  " + _row_text(row, args.modes), flush=True)
    return rows


def _captured(fn: Callable[[], object], device: torch.device) -> Callable[[], object]:
    """``fn`` recorded as a CUDA graph (after a warm-up on a side stream); returns its replay."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def floor_of(row: dict) -> float:
    """The floor an update is held against: captured on CUDA (eager it is launch-bound there)."""
    return row["ms"].get("floor-captured", row["ms"]["floor"])


def _row_text(row: dict, modes: list[str]) -> str:
    cells = [f"{row['batch']:>6}"]
    cells += [
        f"{row['ms'][m]:>9.3f}" if m in row["ms"] else f"{'-':>9}"
        for m in ("floor", "floor-captured", *modes)
    ]
    best = min((row["ms"][m] for m in modes if m in row["ms"] and m != "none"), default=None)
    ratios = ""
    if best is not None and "none" in row["ms"]:
        ratios = f"  best/floor {best / floor_of(row):.2f}  none/best {row['ms']['none'] / best:.2f}"
    return " ".join(cells) + ratios


def header(modes: list[str]) -> str:
    """The column names of :func:`update_table`'s printed rows."""
    names = ["floor", "floor-cap", *(m[:9] for m in modes)]
    return "  " + " ".join([f"{'batch':>6}", *(f"{n:>9}" for n in names)]) + "  (ms per update)"


def pipeline(args: argparse.Namespace, modes: list[str]) -> list[dict]:
    """Env-steps/s of the whole training loop at Isaac-Ant's large-env settings on a synthetic env."""
    from meow.config import load_config
    from meow.envs.synthetic import SyntheticVecEnv
    from meow.runners import OffPolicyRunner

    device = torch.device(args.device)
    n = args.num_envs
    results = []
    for mode in modes:
        if mode == "compile-reduce-overhead":
            continue  # not a setting of algo.capture
        torch._dynamo.reset()
        cfg = load_config(
            "Isaac-Ant",
            [
                f"env.num_envs={n}",
                f"device={device}",
                f"algo.capture={mode}",
                f"algo.matmul_precision={args.matmul_precision}",
                "runner.progress=false",
                *args.overrides,
            ],
        )
        env = SyntheticVecEnv(n, cfg.env.obs_dim, cfg.env.action_dim, device)
        runner = OffPolicyRunner(cfg, env, None, None)
        warm = (
            cfg.runner.warmup_steps + 5 * n
        )  # random actions, then the first updates (compilation, capture)
        cfg.runner.total_steps = warm
        start = time.perf_counter()
        runner.learn()
        _sync(device)
        warm_s = time.perf_counter() - start
        updates0 = runner.num_updates
        cfg.runner.total_steps = warm + args.pipeline_steps * n
        start = time.perf_counter()
        runner.learn()
        _sync(device)
        seconds = time.perf_counter() - start
        result = {
            "mode": runner.alg.capture.mode,
            "matmul_precision": cfg.algo.matmul_precision,
            "overrides": list(args.overrides),
            "num_envs": n,
            "batch_size": cfg.algo.batch_size,
            "updates_per_step": cfg.algo.updates_per_step,
            "replay_transitions": cfg.buffer.capacity,
            "env_steps_per_s": args.pipeline_steps * n / seconds,
            "updates_per_s": (runner.num_updates - updates0) / seconds,
            "warmup_s": round(warm_s, 2),
        }
        results.append(result)
        print(
            f"  pipeline {result['mode']:>9} {result['matmul_precision']:>7}: "
            f"{result['env_steps_per_s']:,.0f} env-steps/s, "
            f"{result['updates_per_s']:,.0f} updates/s of batch {result['batch_size']} "
            f"({n} envs, {result['updates_per_step']} updates per step)",
            flush=True,
        )
        del runner, env
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return results


def kernel_profile(args: argparse.Namespace, batch: int, top: int = 12) -> dict:
    """Where an eager update's GPU time goes at ``batch``: the top kernels, and matrix products apart."""
    from torch.profiler import ProfilerActivity, profile

    device = torch.device(args.device)
    buf = _buffer(args, device)
    alg = _learner(args, device, "none")
    for _ in range(3):
        alg.update_from(buf, batch)
    updates = 20
    _sync(device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(updates):
            alg.update_from(buf, batch)
        _sync(device)
    kernels: dict[str, float] = {}
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            kernels[event.name] = kernels.get(event.name, 0.0) + event.device_time / updates
    total = sum(kernels.values())
    gemm_words = ("gemm", "cutlass", "xmma")  # cuBLAS / CUTLASS matrix-product kernels
    matmul = sum(us for name, us in kernels.items() if any(w in name.lower() for w in gemm_words))
    ranked = sorted(kernels.items(), key=lambda kv: -kv[1])[:top]
    print(
        f"  profile at batch {batch}: {total / 1000:.3f} ms of kernels per update, "
        f"matrix products {matmul / 1000:.3f} ms"
    )
    for name, us in ranked:
        print(f"    {us / 1000:8.3f} ms  {name[:110]}")
    return {
        "batch": batch,
        "kernel_ms_per_update": total / 1000,
        "matmul_ms_per_update": matmul / 1000,
        "top": [{"name": name, "ms": us / 1000} for name, us in ranked],
    }


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} torch threads"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    precision = "TF32 matrix products" if args.matmul_precision == "tf32" else "float32"
    print(
        f"[benchmark_update] device {device_name(device)} | torch {torch.__version__} | obs {args.obs_dim}, "
        f"act {args.action_dim}, n_step {args.n_step} | {precision}"
    )
    out: dict = {
        "device": device_name(device),
        "torch": torch.__version__,
        "n_step": args.n_step,
        "precision": precision,
    }
    if not args.pipeline_only:
        print(header(args.modes))
        out["updates"] = update_table(args)
    if args.pipeline:
        out["pipeline"] = pipeline(args, args.modes)
    if args.profile_batch:
        out["profile"] = kernel_profile(args, args.profile_batch)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))
        print(f"[benchmark_update] wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
