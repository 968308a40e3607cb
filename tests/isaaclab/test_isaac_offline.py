"""Offline-first start: no ISAACSIM_ASSET_ROOT and an asset server out of reach.

An unreachable server is simulated with an HTTPS proxy on a closed local port (what an
air-gapped machine's requests meet); a reachable one with a local HTTP server.
"""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from meow_isaac.offline import choose_asset_root, server_reachable

ROOT = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def local_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _offline_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ISAACSIM_ASSET_ROOT"}
    proxy = f"http://127.0.0.1:{_closed_port()}"
    env.update(https_proxy=proxy, HTTPS_PROXY=proxy, http_proxy=proxy, HTTP_PROXY=proxy)
    env["MEOW_ISAAC_ASSET_CACHE"] = str(tmp_path / "cache")
    return env


def test_the_probe_tells_an_answering_server_from_none(local_server):
    assert server_reachable(local_server)  # answers 404 for the file: reachable all the same
    t = time.perf_counter()
    assert not server_reachable(f"http://127.0.0.1:{_closed_port()}")
    assert time.perf_counter() - t < 3.5


def test_with_a_reachable_server_nothing_changes(local_server, tmp_path, monkeypatch):
    monkeypatch.delenv("ISAACSIM_ASSET_ROOT")
    monkeypatch.setenv("MEOW_ISAAC_ASSET_CACHE", str(tmp_path / "cache"))
    assert choose_asset_root(local_server) is None
    assert "ISAACSIM_ASSET_ROOT" not in os.environ and not (tmp_path / "cache").exists()


def test_with_the_variable_set_nothing_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("ISAACSIM_ASSET_ROOT", str(tmp_path / "mine"))
    assert choose_asset_root(f"http://127.0.0.1:{_closed_port()}") is None


BUILD_THEN_REUSE = """
from meow_isaac.offline import choose_asset_root
from meow_isaac.env import resolve_env_cfg
offline = choose_asset_root()
cfg = resolve_env_cfg("Isaac-Ant-v0", 2, "cpu", ["physics=newton_mjwarp"])
offline.provide(cfg, "Isaac-Ant-v0")  # builds
offline.provide(cfg, "Isaac-Ant-v0")  # reuses
print("probe", round(offline.probe_s, 2))
"""


def test_offline_the_local_root_is_built_once_then_reused(tmp_path):
    env = _offline_env(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", BUILD_THEN_REUSE], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [line for line in out.stdout.splitlines() if line.startswith("[meow]")]
    cache = tmp_path / "cache"
    assert len(lines) == 2 and f"built the local asset root {cache}" in lines[0]
    assert f"using the local asset root {cache}, built earlier" in lines[1]
    assert (cache / "Isaac/Robots/IsaacSim/Ant/ant_instanceable.usd").is_file()
    probe_s = float(out.stdout.split("probe ")[1].split()[0])
    assert probe_s < 3.5


def test_offline_a_task_whose_assets_cannot_be_built_is_a_one_line_error_in_seconds(tmp_path):
    env = _offline_env(tmp_path)
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), "--task", "Isaac-Velocity-Flat-Anymal-D-v0"]
    cmd += ["--num_envs", "2", f"runner.log_dir={tmp_path / 'logs'}"]
    t = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    took = time.perf_counter() - t
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2 and len(errors) == 1, out.stderr[-2000:]
    assert "needs Isaac/IsaacLab/Robots/ANYbotics/ANYmal-D/anymal_d.usd" in errors[0]
    assert "cannot be reached, and ISAACSIM_ASSET_ROOT is unset" in errors[0]
    assert not (tmp_path / "cache").exists() and not (tmp_path / "logs").exists()
    print(f"\nANYmal offline error after {took:.1f} s (process start to exit)")
