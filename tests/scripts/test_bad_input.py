"""Every value a user types is answered, when wrong, with one line: ``error: ...`` naming the
value and what would be valid, exit status 2, and nothing created.

The table below holds the inputs and the text the answer must contain. The scripts' ``main`` is
called in this process (a bad input stops before any environment or network is built).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from script_loader import load_script

MG = ["--task", "MultiGoal"]
HOP = ["--task", "Hopper-v5"]
SMOKE = str(Path(__file__).resolve().parents[2] / "experiments" / "smoke.yaml")

# (script, arguments, text the one-line answer contains). "{ckpt}" is a small trained run's
# checkpoint, "{incomplete}" a copy of it whose learner state lacks its policy, "{file}" an
# existing regular file.
CASES = [
    # ---- train.py: flags
    ("train", [], "give --task (a new run) or --resume"),
    ("train", ["--task", "Hoper-v5"], "unknown task 'Hoper-v5'; did you mean Hopper-v5"),
    ("train", [*MG, "--algo", "td3"], "--algo td3 is not available; valid: meow, sac, ppo"),
    ("train", [*MG, "--algo", "ppo"], "--algo ppo is not available for MultiGoal (multigoal task); valid:"),
    ("train", [*MG, "--runner", "torch"], "argument --runner: invalid choice: 'torch'"),
    ("train", [*MG, "--seed", "-1"], "argument --seed: -1 is invalid; valid: an integer >= 0"),
    ("train", [*MG, "--seed", "one"], "argument --seed: 'one' is not an integer; valid: an integer >= 0"),
    ("train", [*MG, "--seed"], "argument --seed: expected one argument"),
    ("train", [*MG, "--device", "gpu"], "device=gpu is invalid; valid: auto, cpu, cuda, cuda:N"),
    ("train", [*MG, "--device", "cuda:7"], "device=cuda:7 is invalid"),
    ("train", [*MG, "--num_envs", "0"], "argument --num_envs: 0 is invalid; valid: an integer >= 1"),
    ("train", [*MG, "--num_envs", "2.5"], "argument --num_envs: '2.5' is not an integer"),
    ("train", [*MG, "--total_steps", "0"], "argument --total_steps: 0 is invalid; valid: an integer >= 1"),
    ("train", [*MG, "--total_steps", "1e6"], "argument --total_steps: '1e6' is not an integer"),
    ("train", [*MG, "--max_iterations", "-5"], "argument --max_iterations: -5 is invalid"),
    ("train", [*MG, "--video_length", "0"], "argument --video_length: 0 is invalid; valid: an integer >= 1"),
    ("train", [*MG, "--video_interval", "x"], "argument --video_interval: 'x' is not an integer"),
    ("train", [*MG, "--video"], "--video records training of env kinds that support it, not multigoal tasks"),
    ("train", [*MG, "--runner", "rl_games", "--video"], "--video is not available with --runner rl_games"),
    (
        "train",
        [*HOP, "--algo", "sac", "--video"],
        "--algo sac takes no --runner, --video or --distributed",
    ),
    ("train", [*MG, "--bogus"], "unrecognized arguments: --bogus"),
    ("train", [*MG, "--run_dir", "{file}"], "--run_dir {file} is a file; valid: a directory"),
    ("train", [*MG, "--run_dir", "{file}/run"], "--run_dir={file}/run is invalid: {file} is not a directory"),
    ("train", [*MG, "--runner", "rl_games", "--run_dir", "r"], "--run_dir is not available with --runner"),
    ("train", ["--resume", "{ckpt}", "--algo", "sac"], "is a meow run, not --algo sac"),
    (
        "train",
        [*HOP, "--algo", "sac", "env.num_envs=2"],
        "env.num_envs=2 is invalid for --algo sac on Hopper-v5: SB3's SAC steps one environment; valid: 1",
    ),
    ("experiments", [], "the following arguments are required: {run,status,stop,report}"),
    ("experiments", ["run", "nowhere.yaml"], "grid file nowhere.yaml does not exist"),
    ("experiments", ["run", "{file}"], "grid file {file} must be a mapping"),
    ("experiments", ["walk", "x.yaml"], "invalid choice: 'walk' (choose from 'run', 'status'"),
    (
        "experiments",
        ["run", "x.yaml", "--jobs", "0"],
        "argument --jobs: 0 is invalid; valid: an integer >= 1",
    ),
    ("experiments", ["stop", "x.yaml", "--timeout", "-1"], "argument --timeout: -1 is invalid"),
    ("experiments", ["report", SMOKE, "--steps", "25k"], "--steps 25k is invalid; valid: comma-separated"),
    ("experiments", ["report", SMOKE, "--out", "{file}/r"], "--out={file}/r is invalid"),
    ("experiments", ["report", SMOKE, "--out", "r"], "no run of grid 'smoke' has logged an evaluation yet"),
    ("train", ["--resume", "{ckpt}", "--checkpoint", "{file}"], "give --resume or --checkpoint, not both"),
    ("train", ["--resume", "nowhere/run"], "checkpoint nowhere/run does not exist"),
    ("train", ["--resume", "{file}"], "cannot read checkpoint"),
    ("train", ["--resume", "{ckpt}", "--task", "Hopper-v5"], "is a MultiGoal run, not --task Hopper-v5"),
    ("train", ["--resume", "{ckpt}", "algo.num_couplings=2"], "holds a network that does not match"),
    ("train", ["--resume", "{ckpt}", "env.kind=gymnasium"], "env.kind cannot be overridden here"),
    # ---- train.py: overrides, every section of config/meow.yaml
    (
        "train",
        [*MG, "algo.coupling_hidden=[64,"],
        "override 'algo.coupling_hidden=[64,' is not a valid value",
    ),
    ("train", [*MG, "algo.lr"], "override 'algo.lr' is not of the form key=value"),
    (
        "train",
        [*MG, "algo.lrr=0.1"],
        "unknown key 'algo.lrr' in override 'algo.lrr=0.1'; did you mean algo.lr",
    ),
    ("train", [*MG, "env.episode_length_s=5"], "unknown key 'env.episode_length_s'"),
    ("train", [*MG, "task=Hopper"], "task cannot be overridden here"),
    ("train", [*MG, "env.id=Hopper-v5"], "env.id cannot be overridden here"),
    ("train", [*MG, "seed=-3"], "seed=-3 is invalid; valid: an integer >= 0"),
    ("train", [*MG, "seed=abc"], "bad value for 'seed'"),
    ("train", [*MG, "device=tpu"], "device=tpu is invalid"),
    ("train", [*MG, "torch_threads=-1"], "torch_threads=-1 is invalid; valid: an integer >= 0"),
    ("train", [*MG, "torch_threads=two"], "bad value for 'torch_threads'"),
    ("train", [*MG, "env.num_envs=0"], "env.num_envs=0 is invalid; valid: an integer >= 1"),
    ("train", [*MG, "env.num_envs=many"], "bad value for 'env.num_envs'"),
    ("train", [*MG, "env.eval_envs=-1"], "env.eval_envs=-1 is invalid; valid: an integer >= 0"),
    ("train", [*MG, "env.obs_dim=-2"], "env.obs_dim=-2 is invalid"),
    ("train", [*MG, "env.obs_dim=3"], "env.obs_dim=3 in the task settings, but MultiGoal has 2"),
    ("train", [*MG, "env.action_dim=x"], "bad value for 'env.action_dim'"),
    ("train", [*MG, "env.kwargs.speed=3"], "env.kwargs={'speed': 3} is invalid for MultiGoal"),
    ("train", [*MG, "env.kwargs=5"], "bad value for 'env.kwargs'"),
    (
        "train",
        [*MG, "env.sim_overrides=[physics=physx]"],
        "override 'physics=physx' is invalid for MultiGoal",
    ),
    ("train", [*MG, "env.aliases=3"], "bad value for 'env.aliases'"),
    ("train", [*MG, "algo.lr=0"], "algo.lr=0.0 is invalid; valid: a number > 0"),
    ("train", [*MG, "algo.lr=fast"], "bad value for 'algo.lr'"),
    ("train", [*MG, "algo.gamma=1"], "algo.gamma=1.0 is invalid; valid: a number in [0, 1)"),
    ("train", [*MG, "algo.tau=0"], "algo.tau=0.0 is invalid; valid: a number in (0, 1]"),
    ("train", [*MG, "algo.shift_scale=value"], "algo.shift_scale=value is invalid; valid: alpha | reward"),
    (
        "train",
        [*MG, "algo.coupling_shift_bound=1"],
        "algo.coupling_shift_bound (in override 'algo.coupling_shift_bound=1') was removed",
    ),
    ("train", [*MG, "algo.head_norm=batch"], "algo.head_norm=batch is invalid; valid: none | layer | rms"),
    ("train", [*MG, "algo.weight_decay=0.01"], "valid: no algo.weight_decay (commit 195055e still has it)"),
    ("train", [*MG, "algo.alpha_autotune=maybe"], "bad value for 'algo.alpha_autotune'"),
    (
        "train",
        [*MG, "algo.target_entropy=.nan"],
        "algo.target_entropy=nan is invalid; valid: a finite number",
    ),
    ("train", [*MG, "algo.alpha_lr=0"], "algo.alpha_lr=0.0 is invalid; valid: a number > 0"),
    ("train", [*MG, "algo.reward_norm=often"], "bad value for 'algo.reward_norm'"),
    ("train", [*MG, "algo.reward_norm_max=0"], "algo.reward_norm_max=0.0 is invalid; valid: a number > 0"),
    (
        "train",
        [*MG, "algo.target_bound=true"],
        "algo.target_bound (in override 'algo.target_bound=true') was",
    ),
    (
        "train",
        [*MG, "algo.log_prob_floor=-.inf"],
        "algo.log_prob_floor=-inf is invalid; valid: a finite number",
    ),
    ("train", [*MG, "algo.preset=fast"], "algo.preset=fast is invalid; valid: none | paper"),
    (
        "train",
        [*MG, "algo.log_prob_floor_scope=fit"],
        "algo.log_prob_floor_scope (in override 'algo.log_prob_floor_scope=fit') was removed",
    ),
    ("train", [*MG, "algo.tau=1.5"], "algo.tau=1.5 is invalid"),
    ("train", [*MG, "algo.alpha=-0.1"], "algo.alpha=-0.1 is invalid; valid: a number > 0"),
    ("train", [*MG, "algo.alpha=.inf"], "algo.alpha=inf is invalid; valid: a finite number"),
    ("train", [*MG, "algo.lr=.nan"], "algo.lr=nan is invalid; valid: a finite number"),
    ("train", [*MG, "algo.grad_clip=0"], "algo.grad_clip=0.0 is invalid; valid: a number > 0"),
    ("train", [*MG, "algo.batch_size=0"], "algo.batch_size=0 is invalid; valid: an integer >= 1"),
    ("train", [*MG, "algo.batch_size=64.5"], "bad value for 'algo.batch_size'"),
    (
        "train",
        [*MG, "algo.batch_size=9999999"],
        "algo.batch_size=9999999 is invalid; valid: at most buffer.capacity",
    ),
    ("train", [*MG, "algo.updates_per_step=0"], "algo.updates_per_step=0 is invalid"),
    ("train", [*MG, "algo.log_sigma_min=2"], "algo.log_sigma_min=2.0 is invalid; valid: a number below"),
    ("train", [*MG, "algo.log_sigma_max=x"], "bad value for 'algo.log_sigma_max'"),
    ("train", [*MG, "algo.num_couplings=0"], "algo.num_couplings=0 is invalid; valid: an integer >= 1"),
    ("train", [*MG, "algo.coupling_hidden=[64,0]"], "algo.coupling_hidden=[64, 0] is invalid"),
    ("train", [*MG, "algo.coupling_hidden=64"], "bad value for 'algo.coupling_hidden'"),
    ("train", [*MG, "algo.scale_hidden=[-1]"], "algo.scale_hidden=[-1] is invalid"),
    ("train", [*MG, "algo.shift_hidden=[a]"], "bad value for 'algo.shift_hidden[0]'"),
    ("train", [*MG, "algo.num_shift_heads=0"], "algo.num_shift_heads=0 is invalid"),
    ("train", [*MG, "algo.reward_shifting=maybe"], "bad value for 'algo.reward_shifting'"),
    ("train", [*MG, "algo.dropout=1"], "algo.dropout=1.0 is invalid; valid: a number in [0, 1)"),
    ("train", [*MG, "algo.layer_norm=maybe"], "bad value for 'algo.layer_norm'"),
    (
        "train",
        [*MG, "algo.coupling_bias=random"],
        "algo.coupling_bias=random is invalid; valid: zeros | default",
    ),
    ("train", [*MG, "algo.q_dropout=twice"], "algo.q_dropout=twice is invalid; valid: shared | per_head"),
    ("train", [*MG, "algo.normalize_obs=yes please"], "bad value for 'algo.normalize_obs'"),
    ("train", [*MG, "algo.capture=graph"], "algo.capture=graph is invalid; valid: auto | none | compile"),
    ("train", [*MG, "algo.capture=cudagraph"], "algo.capture=cudagraph needs CUDA, but device=cpu"),
    ("train", [*MG, "algo.matmul_precision=half"], "algo.matmul_precision=half is invalid; valid: float32"),
    ("train", [*MG, "algo.matmul_precision=tf32"], "algo.matmul_precision=tf32 needs CUDA"),
    ("train", [*MG, "algo.n_step=0"], "algo.n_step=0 is invalid; valid: an integer >= 1"),
    ("train", [*MG, "algo.n_step=x"], "bad value for 'algo.n_step'"),
    ("train", [*MG, "algo.compile=true"], "was replaced by algo.capture; write algo.capture=compile"),
    ("train", [*MG, "buffer.capacity=0"], "buffer.capacity=0 is invalid; valid: an integer >= 1"),
    ("train", [*MG, "buffer.capacity=1e9"], "bad value for 'buffer.capacity'"),
    ("train", [*MG, "buffer.capacity=100000000000"], "replay buffer of 100,000,000,000 transitions needs"),
    ("train", [*MG, "runner.total_steps=0"], "runner.total_steps=0 is invalid"),
    ("train", [*MG, "runner.warmup_steps=-1"], "runner.warmup_steps=-1 is invalid"),
    ("train", [*MG, "runner.eval_interval=0"], "runner.eval_interval=0 is invalid; valid: an integer >= 1"),
    (
        "train",
        [*MG, "runner.eval_mode=sampled"],
        "runner.eval_mode=sampled is invalid; valid: deterministic | stochastic | both",
    ),
    ("train", [*MG, "runner.log_interval=-5"], "runner.log_interval=-5 is invalid"),
    ("train", [*MG, "runner.checkpoint_interval=0"], "runner.checkpoint_interval=0 is invalid"),
    (
        "train",
        [*MG, "runner.keep_checkpoints=-1"],
        "runner.keep_checkpoints=-1 is invalid; valid: an integer >= 0",
    ),
    ("train", [*MG, "runner.save_buffer=sometimes"], "bad value for 'runner.save_buffer'"),
    ("train", [*MG, "runner.save_buffer_max_gib=-1"], "runner.save_buffer_max_gib=-1.0 is invalid"),
    ("train", [*MG, "runner.save_buffer_max_gib=lots"], "bad value for 'runner.save_buffer_max_gib'"),
    (
        "train",
        [*MG, "runner.log_dir={file}/logs"],
        "runner.log_dir={file}/logs is invalid: {file} is not a directory",
    ),
    ("train", [*MG, "runner.log_dir="], "bad value for 'runner.log_dir'"),
    # /proc refuses new directories even to root, whom its permission bits let through
    ("train", [*MG, "runner.log_dir=/proc/x"], "runner.log_dir=/proc/x is invalid: "),
    ("train", [*MG, "runner.log_dir=' '"], "runner.log_dir=' ' is invalid; valid: a directory path"),
    ("train", [*MG, "runner.progress=loud"], "bad value for 'runner.progress'"),
    (
        "train",
        [*MG, "runner.max_minutes=-1"],
        "runner.max_minutes=-1.0 is invalid; valid: a number of minutes >= 0 (0: no wall-clock budget)",
    ),
    ("train", [*MG, "runner.max_minutes=soon"], "bad value for 'runner.max_minutes'"),
    ("train", [*MG, "--max_minutes", "inf"], "runner.max_minutes=inf is invalid"),
    (
        "train",
        [*MG, "--runner", "rl_games", "--max_minutes", "1"],
        "runner.max_minutes=1 is not available with --runner rl_games",
    ),
    # ---- probe_critic.py
    ("probe_critic", [], "the following arguments are required: CHECKPOINT"),
    ("probe_critic", ["nowhere"], "checkpoint nowhere does not exist"),
    ("probe_critic", ["{file}"], "cannot read checkpoint"),
    ("probe_critic", ["{ckpt}", "--samples", "0"], "argument --samples: 0 is invalid; valid: an integer"),
    ("probe_critic", ["{ckpt}", "--seed", "x"], "argument --seed: 'x' is not an integer"),
    # ---- play.py
    ("play", [], "the following arguments are required: checkpoint"),
    ("play", ["nowhere"], "checkpoint nowhere does not exist"),
    ("play", ["{file}"], "cannot read checkpoint"),
    ("play", ["{incomplete}"], "{incomplete} is incomplete: its learner state has no 'policy' entry"),
    ("play", ["{ckpt}", "--episodes", "0"], "argument --episodes: 0 is invalid; valid: an integer >= 1"),
    ("play", ["{ckpt}", "--episodes", "ten"], "argument --episodes: 'ten' is not an integer"),
    ("play", ["{ckpt}", "--seed", "-1"], "argument --seed: -1 is invalid; valid: an integer >= 0"),
    ("play", ["{ckpt}", "--device", "gpu"], "device=gpu is invalid"),
    ("play", ["{ckpt}", "--runner", "x"], "argument --runner: invalid choice: 'x'"),
    ("play", ["{ckpt}", "--eval_mode", "sampled"], "argument --eval_mode: invalid choice: 'sampled'"),
    (
        "play",
        ["{ckpt}", "--latent_scale", "1.5"],
        "argument --latent_scale: 1.5 is invalid; valid: a number in [0.0, 1.0]",
    ),
    ("play", ["{ckpt}", "--latent_scale", "half"], "argument --latent_scale: 'half' is not a number"),
    ("play", ["{ckpt}", "--latent_scale", "nan"], "argument --latent_scale: nan is invalid"),
    (
        "play",
        ["{ckpt}", "--runner", "rl_games", "--latent_scale", "0.5"],
        "--latent_scale belongs to the core runner",
    ),
    (
        "play",
        ["{ckpt}", "--runner", "rl_games", "--eval_mode", "stochastic"],
        "--eval_mode stochastic belongs to the core runner",
    ),
    (
        "play",
        ["{ckpt}", "--runner", "rl_games", "--export"],
        "--video and --export belong to the core runner",
    ),
    # ---- compare.py
    ("compare", [], "the following arguments are required: [LABEL=]PATTERN"),
    ("compare", ["nothing/here/*"], "'nothing/here/*' matches no folder with TensorBoard event files"),
    ("compare", ["x", "--confidence", "1.5"], "--confidence 1.5 is invalid; valid: a number in (0, 1)"),
    ("compare", ["x", "--confidence", "high"], "argument --confidence: invalid float value: 'high'"),
    ("compare", ["x", "--points", "1"], "argument --points: 1 is invalid; valid: an integer >= 2"),
    ("compare", ["x", "--out", "plot.pdf"], "--out plot.pdf is invalid; valid: a path ending in .png"),
    ("compare", ["x", "--at_steps", "-5"], "argument --at_steps: -5.0 is invalid; valid: a finite number"),
    ("compare", ["x", "--last_steps", "two"], "argument --last_steps: 'two' is not a number; valid:"),
    ("compare", ["x", "--out", "{file}/c.png"], "is not a directory"),
    # ---- benchmark_throughput.py
    ("benchmark_throughput", ["--steps", "0"], "argument --steps: 0 is invalid; valid: an integer >= 1"),
    ("benchmark_throughput", ["--warmup", "-1"], "argument --warmup: -1 is invalid; valid: an integer >= 0"),
    ("benchmark_throughput", ["--burnin", "x"], "argument --burnin: 'x' is not an integer"),
    ("benchmark_throughput", ["--threads", "0"], "argument --threads: 0 is invalid"),
    ("benchmark_throughput", ["--repeats", "0"], "argument --repeats: 0 is invalid"),
    ("benchmark_throughput", ["--warmup", "0", "--burnin", "10"], "--warmup + --burnin must be at least 256"),
    ("benchmark_throughput", ["--task", "Hoper-v5"], "unknown task 'Hoper-v5'"),
    ("benchmark_throughput", ["--task", "MultiGoal"], "--task MultiGoal is invalid; valid: a Gymnasium task"),
    ("benchmark_throughput", ["--out", "{file}/r.json"], "is not a directory"),
    # ---- benchmark_isaac.py
    ("benchmark_isaac", ["--num_envs", "0"], "argument --num_envs: 0 is invalid; valid: an integer >= 1"),
    ("benchmark_isaac", ["--meow_iterations", "x"], "argument --meow_iterations: 'x' is not an integer"),
    ("benchmark_isaac", ["--ppo_iterations", "0"], "argument --ppo_iterations: 0 is invalid"),
    ("benchmark_isaac", ["--repeats", "-1"], "argument --repeats: -1 is invalid"),
    ("benchmark_isaac", ["--against", "sac"], "argument --against: invalid choice: 'sac'"),
    ("benchmark_isaac", ["--task", "Hopper-v5"], "--task Hopper-v5 is invalid; valid: an Isaac task"),
    ("benchmark_isaac", ["--task", "MultiGoal", "algo.lr=-1"], "algo.lr=-1.0 is invalid"),
    ("benchmark_isaac", ["--device", "gpu"], "device=gpu is invalid"),
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A small MultiGoal run's checkpoint (made once)."""
    logs = tmp_path_factory.mktemp("trained")
    args = ["--task", "MultiGoal", "runner.total_steps=100", "runner.warmup_steps=50", "env.eval_envs=0"]
    args += ["algo.coupling_hidden=[8]", "algo.scale_hidden=[8]", "algo.shift_hidden=[8]"]
    assert load_script("train").main([*args, f"runner.log_dir={logs}", "runner.progress=false"]) == 0
    (ckpt,) = logs.glob("meow/MultiGoal/*/model_100.pt")
    return ckpt


@pytest.fixture(scope="module")
def incomplete(trained, tmp_path_factory) -> Path:
    """A copy of the small run's checkpoint whose learner state lacks its ``policy``."""
    import torch

    from meow.runners.checkpoint import safe_load

    ckpt = safe_load(trained)
    del ckpt["learner"]["policy"]
    path = tmp_path_factory.mktemp("incomplete") / "model_100.pt"
    torch.save(ckpt, path)
    return path


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(
    ("script", "argv", "expected"), CASES, ids=[f"{c[0]}:{' '.join(c[1])}"[:80] for c in CASES]
)
def test_a_bad_input_is_one_line_status_2_and_creates_nothing(
    script, argv, expected, trained, incomplete, tmp_path, monkeypatch, capsys
):
    work = tmp_path / "work"
    work.mkdir()
    afile = tmp_path / "afile.txt"
    afile.write_text("not a checkpoint")
    monkeypatch.chdir(work)
    fill = {"{ckpt}": str(trained), "{incomplete}": str(incomplete), "{file}": str(afile)}
    for key, value in fill.items():
        argv = [a.replace(key, value) for a in argv]
        expected = expected.replace(key, value)
    run_before = _tree(trained.parent), _tree(incomplete.parent)
    capsys.readouterr()
    try:
        status = load_script(script).main(argv)
    except SystemExit as exit_:
        status = exit_.code
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert expected in err, err
    assert _tree(work) == [] and (_tree(trained.parent), _tree(incomplete.parent)) == run_before


def test_the_table_covers_every_setting_of_the_defaults():
    from omegaconf import OmegaConf

    from meow.config import ROOT

    def keys(node, prefix=""):
        for k, v in node.items():
            yield from keys(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [f"{prefix}{k}"]

    defaults = OmegaConf.to_container(OmegaConf.load(ROOT / "config" / "meow.yaml"))
    typed = {a.split("=", 1)[0] for _, argv, _ in CASES for a in argv if "=" in a and not a.startswith("-")}
    missing = [k for k in keys(defaults) if k not in typed and not any(t.startswith(k + ".") for t in typed)]
    assert missing == [], f"settings without a bad-input case: {missing}"
    assert len(CASES) >= 100


def test_a_damaged_replay_buffer_beside_a_good_checkpoint_resumes_with_a_notice(trained, tmp_path, capsys):
    """Not an error: the buffer is reported in one line and refills (tests/runners has the details)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "model_100.pt").write_bytes(trained.read_bytes())
    (run / "replay_buffer.pt").write_bytes(b"PK\x03\x04 damaged")
    argv = ["--resume", str(run), "runner.total_steps=120", f"runner.log_dir={tmp_path / 'logs'}"]
    assert load_script("train").main([*argv, "runner.progress=false"]) == 0
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if "is damaged (" in line] == [
        f"[meow] replay buffer {run / 'replay_buffer.pt'} is damaged (cannot read checkpoint "
        f"{run / 'replay_buffer.pt'}: RuntimeError: the file is truncated or damaged); it refills before "
        "updates resume"
    ]
    assert os.path.getsize(run / "replay_buffer.pt") == len(b"PK\x03\x04 damaged")
