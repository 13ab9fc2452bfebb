"""A Redis server of a test's own (not the shared test Redis), for fault tests that stop and start it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.service_helpers import free_port


def delete_prefix(url: str, prefix: str) -> None:
    """Delete every key under ``prefix`` (a test's fresh prefix on the shared test Redis)."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


class OwnRedis:
    """``redis-server`` on a free 127.0.0.1 port with its data in ``directory``, persisted as in
    production (append-only file, fsync on every write). ``stop`` and ``start`` restart it on the
    same port and directory, so it comes back with what it had acknowledged."""

    def __init__(self, directory: Path) -> None:
        exe = shutil.which("redis-server")
        if exe is None:  # as for the shared test Redis: CI must run these tests
            if os.environ.get("CI"):
                pytest.fail("redis-server is not installed (CI is set, so the Redis tests must run)")
            pytest.skip("redis-server is not installed")
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._argv = [exe, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(directory),
                      "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                      "--daemonize", "no", "--logfile", "redis.log"]  # fmt: skip
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        assert self._process is None, "already running"
        self._process = subprocess.Popen(self._argv, cwd=self.directory, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        with redis.Redis(port=self.port, socket_connect_timeout=1) as client:
            while True:
                try:
                    if client.ping():
                        return
                except (redis.BusyLoadingError, redis.ConnectionError):
                    pass
                if self._process.poll() is not None or time.monotonic() > deadline:
                    log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"redis-server did not start: {log}")
                time.sleep(0.02)

    def stop(self, how: str = "shutdown") -> None:
        """``shutdown``: SIGTERM, which Redis handles as SHUTDOWN (it flushes its file, closes every
        connection and exits); ``kill``: SIGKILL, a crash. Returns once the process is gone."""
        assert self._process is not None, "not running"
        self._process.send_signal(signal.SIGKILL if how == "kill" else signal.SIGTERM)
        self._process.wait(timeout=10)
        self._process = None

    def close(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None


@contextlib.contextmanager
def own_redis(directory: Path) -> Iterator[OwnRedis]:
    """A started ``OwnRedis`` in ``directory``; killed on exit whatever state the test left it in."""
    directory.mkdir(parents=True, exist_ok=True)
    server = OwnRedis(directory)
    try:
        server.start()
        yield server
    finally:
        server.close()
