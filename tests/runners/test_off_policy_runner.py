"""The runner: exact resumption, seeding, logging, checkpoint safety and clear errors."""

from __future__ import annotations

import pytest
import torch

from meow.config import load_config
from meow.envs.multigoal import MultiGoalEnv
from meow.runners import CheckpointError, OffPolicyRunner, find_checkpoint, read_checkpoint


def _runner(cfg, log_dir=None, eval_envs: int = 0) -> OffPolicyRunner:
    eval_env = MultiGoalEnv(eval_envs) if eval_envs else None
    return OffPolicyRunner(cfg, MultiGoalEnv(cfg.env.num_envs), eval_env, log_dir)


def _params(runner: OffPolicyRunner) -> list[torch.Tensor]:
    return [p.detach().clone() for p in runner.alg.policy.parameters()]


STATEFUL = ("algo.normalize_obs=true", "algo.n_step=3", "algo.reward_norm=true", "algo.alpha_autotune=true")
"""Settings that carry state of their own across a resume: the observation normaliser, n-step
windows across the checkpoint, the reward scale and the tuned temperature."""


@pytest.mark.parametrize("settings", [(), STATEFUL], ids=["paper", "stateful"])
def test_resumed_training_reproduces_uninterrupted_training(multigoal_cfg, tmp_path, settings):
    """Train 2N steps straight vs N steps, checkpoint, a fresh process-like runner, N more:
    weights, target, optimizer moments, replay data and every running statistic are bit-identical."""
    straight = _runner(multigoal_cfg("runner.total_steps=240", "env.num_envs=2", *settings))
    straight.learn()

    first = _runner(multigoal_cfg("runner.total_steps=120", "env.num_envs=2", *settings), tmp_path / "a")
    first.learn()
    ckpt = read_checkpoint(tmp_path / "a")
    assert ckpt["global_step"] == 120
    torch.manual_seed(12345)  # whatever happened in between must not matter
    resumed = _runner(multigoal_cfg("runner.total_steps=240", "env.num_envs=2", *settings))
    resumed.load(ckpt)
    resumed.learn()
    for module in ("normalizer", "reward_scale"):
        a, b = getattr(straight.alg, module).state_dict(), getattr(resumed.alg, module).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), module
    if settings:
        assert straight.alg.normalizer.count.item() > 0 and straight.alg.reward_scale.scale.item() != 1.0
        assert torch.equal(straight.alg.log_alpha, resumed.alg.log_alpha)

    assert resumed.global_step == straight.global_step == 240
    assert resumed.num_updates == straight.num_updates > 0
    for a, b in zip(_params(straight), _params(resumed), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(straight.alg.target.parameters(), resumed.alg.target.parameters(), strict=True):
        assert torch.equal(a, b)
    sa, sb = straight.alg.optimizer.state_dict()["state"], resumed.alg.optimizer.state_dict()["state"]
    assert all(torch.equal(sa[k]["exp_avg_sq"], sb[k]["exp_avg_sq"]) for k in sa)
    assert torch.equal(straight.buffer.obs, resumed.buffer.obs)


def test_same_seed_same_run_other_seed_other_run(multigoal_cfg):
    a = _runner(multigoal_cfg("runner.total_steps=100"))
    a.learn()
    b = _runner(multigoal_cfg("runner.total_steps=100"))
    b.learn()
    c = _runner(multigoal_cfg("runner.total_steps=100", "seed=2"))
    c.learn()
    assert all(torch.equal(x, y) for x, y in zip(_params(a), _params(b), strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(_params(a), _params(c), strict=True))


def test_run_directory_has_config_events_checkpoints_and_buffer(multigoal_cfg, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = multigoal_cfg(
        "runner.total_steps=300",
        "runner.log_interval=100",
        "runner.eval_interval=150",
        "runner.checkpoint_interval=100",
    )
    runner = _runner(cfg, tmp_path, eval_envs=3)
    runner.learn()
    assert (tmp_path / "config.yaml").is_file()
    assert sorted(p.name for p in tmp_path.glob("model_*.pt")) == [
        "model_100.pt",
        "model_200.pt",
        "model_300.pt",
    ]
    assert find_checkpoint(tmp_path).name == "model_300.pt"
    assert torch.load(tmp_path / "replay_buffer.pt", weights_only=False)["global_step"] == 300
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {
        "losses/loss",
        "losses/grad_norm",
        "charts/SPS",
        "charts/episodic_return",
        "eval/return_mean",
        "policy/entropy",
        "policy/saturated",
    } <= tags
    assert all(0.0 <= e.value <= 1.0 for e in events.Scalars("policy/saturated"))
    assert [e.step for e in events.Scalars("eval/return_mean")] == [150, 300]
    assert runner.last_eval is not None


@pytest.mark.parametrize(("scale", "low", "high"), [(-10.0, 0.0, 0.05), (10.0, 0.75, 1.0)])
def test_policy_saturated_counts_the_sampled_actions_on_the_tanh_bounds(multigoal_cfg, scale, low, high):
    """``policy/saturated``: with the prior's scale at its smallest (e^-5) no sampled component
    reaches |a| >= 0.99; at its largest (e^3) most do (|u| > 0.13 of a standard normal: 90%)."""
    runner = _runner(multigoal_cfg("algo.log_sigma_min=-5.0", "algo.log_sigma_max=3.0"))
    with torch.no_grad():
        runner.alg.policy.scaling.net[-1].bias.fill_(scale)
    stats = runner._policy_stats(torch.zeros(4096, 2))
    assert low <= stats["policy/saturated"] <= high
    assert set(stats) == {"policy/entropy", "policy/saturated"}


def test_evaluation_is_deterministic(multigoal_cfg):
    runner = _runner(multigoal_cfg("runner.total_steps=100"), eval_envs=4)
    runner.learn()
    runner.num_evals = 0
    first = runner.evaluate()
    runner.num_evals = 0
    assert runner.evaluate() == first


def test_a_checkpoint_of_another_task_is_refused(multigoal_cfg, tmp_path):
    runner = _runner(multigoal_cfg("runner.total_steps=70"), tmp_path)
    runner.learn()
    ckpt = read_checkpoint(tmp_path)
    from meow.envs import make_env

    hopper = load_config("Hopper-v5", ["runner.progress=false", "buffer.capacity=1000"])
    other = OffPolicyRunner(hopper, make_env("gymnasium", "Hopper-v5", 1, "cpu"))
    with pytest.raises(
        CheckpointError, match=r"trained on MultiGoal \(obs 2, act 2\) but this run is Hopper-v5"
    ):
        other.load(ckpt)


def test_a_checkpoint_of_another_architecture_is_refused(multigoal_cfg, tmp_path):
    _runner(multigoal_cfg("runner.total_steps=70"), tmp_path).learn()
    wider = _runner(multigoal_cfg("algo.coupling_hidden=[32,32]"))
    with pytest.raises(CheckpointError, match="does not match this run's algo settings"):
        wider.load(read_checkpoint(tmp_path))


def test_a_checkpoint_whose_learner_state_lacks_an_entry_is_called_incomplete(multigoal_cfg, tmp_path):
    """A learner state without one of its entries (or none at all) is reported as incomplete, in
    one line naming the entry, not as a network of other algo settings."""
    _runner(multigoal_cfg("runner.total_steps=70"), tmp_path).learn()
    ckpt = read_checkpoint(tmp_path)
    for entry in ("policy", "target", "optimizer", "normalizer"):
        cut = {**ckpt, "learner": {k: v for k, v in ckpt["learner"].items() if k != entry}}
        with pytest.raises(CheckpointError) as err:
            _runner(multigoal_cfg()).load(cut)
        assert str(err.value) == (
            f"{ckpt['path']} is incomplete: its learner state has no '{entry}' entry; valid: a "
            "checkpoint written by scripts/train.py"
        )
    with pytest.raises(CheckpointError, match=r"is incomplete: it has no learner state"):
        _runner(multigoal_cfg()).load({k: v for k, v in ckpt.items() if k != "learner"})


def test_files_that_are_not_checkpoints_are_refused(tmp_path):
    (tmp_path / "model_5.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_checkpoint(tmp_path / "model_5.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="is not a MEow checkpoint"):
        read_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no model_<step>.pt"):
        find_checkpoint(tmp_path / "empty")


def test_non_finite_updates_stop_training_without_overwriting_checkpoints(multigoal_cfg, tmp_path):
    runner = _runner(multigoal_cfg("runner.total_steps=100"), tmp_path)
    runner.learn()
    saved = (tmp_path / "model_100.pt").read_bytes()
    runner.alg.nonfinite.fill_(True)
    with pytest.raises(FloatingPointError, match="non-finite"):
        runner.save(tmp_path / "model_100.pt")
    assert (tmp_path / "model_100.pt").read_bytes() == saved
    runner.cfg.runner.total_steps = 200
    with pytest.raises(FloatingPointError, match="env step"):
        runner.learn()
    assert sorted(p.name for p in tmp_path.glob("model_*.pt")) == ["model_100.pt"]


def test_observation_normalizer_tracks_collected_observations(multigoal_cfg):
    runner = _runner(multigoal_cfg("runner.total_steps=200", "algo.normalize_obs=true"))
    runner.learn()
    stored = runner.buffer.obs[: runner.buffer.pos].reshape(-1, 2)
    assert runner.alg.normalizer.count == stored.shape[0]
    assert torch.allclose(runner.alg.normalizer.mean, stored.mean(0), atol=1e-5)


def test_compiled_training_run_matches_eager_from_the_same_seed():
    """``algo.capture=compile`` is the CPU speed-up of the same learner: over a short Hopper run
    (random warm-up, then one compiled update and one compiled action per step) the
    evaluations and the weights equal eager's from the same seed within floating-point noise."""
    from meow.envs import make_env

    def run(capture: str) -> OffPolicyRunner:
        cfg = load_config(
            "Hopper-v5",
            [
                f"algo.capture={capture}",
                "torch_threads=1",
                "runner.warmup_steps=300",
                "runner.total_steps=500",
                "runner.eval_interval=250",
                "runner.eval_mode=deterministic",
                "runner.progress=false",
                "env.eval_envs=2",
            ],
        )
        env = make_env(cfg.env.kind, cfg.env.id, cfg.env.num_envs, cfg.device, cfg.env.kwargs)
        eval_env = make_env(cfg.env.kind, cfg.env.id, cfg.env.eval_envs, cfg.device, cfg.env.kwargs)
        runner = OffPolicyRunner(cfg, env, eval_env, None)
        runner.initial = _params(runner)
        runner.learn()
        env.close()
        eval_env.close()
        return runner

    eager, compiled = run("none"), run("compile")
    assert compiled.num_updates == eager.num_updates == 200
    assert len(eager.evaluations) == 2
    for (step_a, ret_a, _), (step_b, ret_b, _) in zip(eager.evaluations, compiled.evaluations, strict=True):
        assert step_a == step_b
        assert ret_b == pytest.approx(ret_a, rel=1e-3)
    for a, b in zip(_params(eager), _params(compiled), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4)
    # the updates changed the weights: the comparison is not between two untrained flows
    for a, b in zip(eager.initial, compiled.initial, strict=True):
        assert torch.equal(a, b)
    assert max((a - b).abs().max().item() for a, b in zip(_params(eager), eager.initial, strict=True)) > 1e-3


def test_reward_normalisation_leaves_the_logged_returns_raw(multigoal_cfg):
    """Warm-up only (the same random actions either way): the logged episode returns and lengths
    are the env's own, whether or not the learner's rewards are scaled."""
    logged = {}
    for norm in ("false", "true"):
        cfg = multigoal_cfg(
            "runner.total_steps=400",
            "runner.warmup_steps=400",
            "runner.log_interval=50",
            f"algo.reward_norm={norm}",
        )
        runner = _runner(cfg)
        seen = []
        runner.learn(on_log=seen.append)
        logged[norm] = [
            (d["charts/episodic_return"], d["charts/episodic_length"])
            for d in seen
            if "charts/episodic_return" in d
        ]
        scale = runner.alg.reward_scale
    assert logged["true"] == logged["false"] and logged["true"]
    assert abs(scale.scale.item() - 1.0) > 0.1  # the scale moved, yet the logs did not


class _CountingEnv:
    """Env ``i`` pays ``i + 1`` per step and ends its episode after ``i + 2`` steps, alternately by
    termination and by time-out: every episode's return and length are known."""

    obs_dim, action_dim = 2, 1

    def __init__(self, num_envs: int) -> None:
        self.num_envs, self.device = num_envs, torch.device("cpu")
        self.lengths = torch.arange(num_envs) + 2
        self.t = torch.zeros(num_envs, dtype=torch.long)
        self.episodes = torch.zeros(num_envs, dtype=torch.long)

    def reset(self, seed=None) -> torch.Tensor:
        self.t.zero_()
        return torch.zeros(self.num_envs, 2)

    def step(self, actions):
        from meow.envs.protocol import StepResult

        self.t += 1
        done = self.t >= self.lengths
        odd = self.episodes % 2 == 1
        self.episodes += done.long()
        obs = torch.stack((self.t.float(), self.lengths.float()), 1)
        self.t.masked_fill_(done, 0)
        rewards = (torch.arange(self.num_envs) + 1).float()
        return StepResult(obs, rewards, done & ~odd, done & odd, obs)

    def close(self) -> None:
        pass


def test_the_logged_episode_statistics_are_the_finished_episodes_means(multigoal_cfg):
    """Over each log window the logged return and length are the means over every episode that
    ended in it, across envs: a runner that kept returns across episodes, or summed only some
    envs, logs other numbers."""
    n, interval = 3, 60  # 20 vectorized steps a window
    cfg = multigoal_cfg(
        f"env.num_envs={n}",
        "runner.total_steps=240",
        f"runner.log_interval={interval}",
        "runner.warmup_steps=240",
    )
    cfg.env.obs_dim, cfg.env.action_dim = 2, 1
    runner = OffPolicyRunner(cfg, _CountingEnv(n))
    seen = []
    runner.learn(on_log=seen.append)
    assert len(seen) == 4
    lengths = [i + 2 for i in range(n)]
    for window, logged in enumerate(seen):
        start, end = window * 20, (window + 1) * 20  # vectorized steps, 1-based ends in (start, end]
        episodes = [
            (i, k) for i, length in enumerate(lengths) for k in range(start // length + 1, end // length + 1)
        ]
        returns = [(i + 1) * lengths[i] for i, _ in episodes]
        ends = [lengths[i] for i, _ in episodes]
        assert logged["charts/episodic_return"] == pytest.approx(sum(returns) / len(returns))
        assert logged["charts/episodic_length"] == pytest.approx(sum(ends) / len(ends))
