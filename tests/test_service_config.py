"""The service's settings from the environment: what a deployment sets reaches the objects built
from it, and a mistyped value stops the start with one line naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sidecar.kernel.errors import ConfigError
from sidecar.kernel.redis_bus import RedisStreamsBus
from sidecar.kernel.settings import usable_cores
from sidecar.service.config import ServiceConfig, make_bus

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("name", "value"), [
    ("ASSIST_DRAIN_S", "soon"), ("ASSIST_DRAIN_S", "-5"), ("ASSIST_DRAIN_S", "nan"),
    ("ASSIST_REDIS_RECONNECT_S", "0"), ("ASSIST_REDIS_RECONNECT_S", "half a minute"),
])  # fmt: skip
def test_a_bad_seconds_setting_stops_the_start_naming_it(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        ServiceConfig.from_env()


def test_the_drain_and_the_redis_wait_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSIST_DRAIN_S", "120")
    monkeypatch.setenv("ASSIST_REDIS_RECONNECT_S", "5")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    config = ServiceConfig.from_env()
    assert config.drain_s == 120.0
    bus = make_bus(config)  # built, not connected
    assert isinstance(bus, RedisStreamsBus)
    assert bus._reconnect.reconnect_s == 5.0


def test_unset_the_defaults_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ASSIST_DRAIN_S", "ASSIST_REDIS_RECONNECT_S"):
        monkeypatch.delenv(name, raising=False)
    config = ServiceConfig.from_env()
    assert config.drain_s == 0.0  # SIGTERM ends the calls at once unless a drain is asked for
    assert config.redis_reconnect_s == 30.0


def test_thread_pools_size_themselves_to_the_cores_this_process_may_use(tmp_path: Path) -> None:
    """A pod limited to one core of a big node, or a process pinned to one: pools follow that."""
    cpu_max = tmp_path / "cpu.max"
    affinity = len(os.sched_getaffinity(0))
    assert usable_cores(tmp_path / "none") == affinity  # no cgroup v2 quota
    cpu_max.write_text("max 100000\n")
    assert usable_cores(cpu_max) == affinity  # no limit
    cpu_max.write_text("50000 100000\n")
    assert usable_cores(cpu_max) == 1  # half a core still runs one decode
    cpu_max.write_text(f"{(affinity + 3) * 100000} 100000\n")
    assert usable_cores(cpu_max) == affinity  # a quota above the cores it may run on
    pinned = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-c",
         "from sidecar.kernel.settings import default_workers, usable_cores; print(usable_cores(), default_workers())"],
        capture_output=True, text=True, timeout=60, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert pinned.stdout.split() == ["1", "1"]
