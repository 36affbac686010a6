"""conftest.py - fixtures of the Python client's tests: a real nats-server and the real dlq-sidecar as child processes, on free ports."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import nats
import pytest

ROOT = Path(__file__).resolve().parents[3]

# The suite's sidecar flags (as tests/integration/harness.c): fast timers, no jitter, completed
# tasks kept so that they can be inspected, no HTTP listener (ports would collide).
SIDECAR_FLAGS = [
    "http.listen=",
    "timer.tick_ms=10",
    "backoff.exp_base_ms=200",
    "backoff.linear_step_ms=200",
    "backoff.jitter=0",
    "retry.timeout_ms=2000",
    "store.keep_completed=true",
    "log.level=debug",
    "shutdown.drain_ms=1000",
]


def _binary(env: str, default: Path, what: str) -> str:
    path = os.environ.get(env) or str(default)
    if not os.access(path, os.X_OK):
        pytest.fail(f"{what} not found at {path}: build it, or set {env}", pytrace=False)
    return path


def nats_server_bin() -> str:
    return _binary("DLQ_TEST_NATS_SERVER", ROOT / ".deps" / "bin" / "nats-server", "nats-server")


def sidecar_bin() -> str:
    return _binary("DLQ_SIDECAR_BIN", ROOT / "build" / "sidecar" / "dlq-sidecar", "dlq-sidecar")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class World:
    """One test's servers: nats-server (url), the sidecar (when started), their logs in dir."""

    dir: Path
    url: str = ""
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def start_nats(self, jetstream: bool) -> None:
        for _ in range(5):  # a port picked free may be taken by the time the server binds
            port = free_port()
            argv = [nats_server_bin(), "-a", "127.0.0.1", "-p", str(port)]
            if jetstream:
                argv += ["-js", "-sd", str(self.dir / "js")]
            log = self.dir / "nats.log"
            p = subprocess.Popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and p.poll() is None and not _accepts(port):
                time.sleep(0.05)
            if p.poll() is None and _accepts(port):
                self.procs["nats"], self.logs["nats"] = p, log
                self.url = f"nats://127.0.0.1:{port}"
                return
            p.kill()
            p.wait()
        pytest.fail(f"nats-server did not start:\n{_tail(self.dir / 'nats.log')}", pytrace=False)

    def start_sidecar(self, *extra: str) -> None:
        flags: dict[str, str] = {"nats.url": self.url}
        for kv in [*SIDECAR_FLAGS, *extra]:
            k, _, v = kv.partition("=")
            flags[k] = v
        argv = [sidecar_bin()] + [f"--{k}={v}" for k, v in flags.items()]
        env = {k: v for k, v in os.environ.items() if not k.startswith("DLQ_")}
        log = self.dir / "dlq-sidecar.log"
        self.procs["sidecar"] = subprocess.Popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env)
        self.logs["sidecar"] = log
        asyncio.run(self._wait_ready())

    async def _wait_ready(self) -> None:
        nc = await nats.connect(self.url)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if self.procs["sidecar"].poll() is not None:
                    break
                try:
                    r = await nc.request("dlq.admin.health", b"", timeout=0.5)
                    if json.loads(r.data).get("status") == "ok":
                        return
                except Exception:
                    pass
                await asyncio.sleep(0.05)
        finally:
            await nc.close()
        pytest.fail(f"the sidecar did not become ready:\n{_tail(self.logs['sidecar'])}", pytrace=False)

    def stop(self) -> int:
        """Stops the sidecar (SIGTERM) then nats-server; returns the sidecar's exit status."""
        status = 0
        for name in ("sidecar", "nats"):
            p = self.procs.pop(name, None)
            if p is None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                rc = p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                rc = p.wait()
            if name == "sidecar":
                status = rc
        return status


def _world(request: pytest.FixtureRequest, jetstream: bool, flags: tuple[str, ...]) -> Iterator[World]:
    d = Path(tempfile.mkdtemp(prefix="dlq-py-"))
    w = World(d)
    try:
        w.start_nats(jetstream)
        w.start_sidecar(*flags)
        yield w
    finally:
        status = w.stop()
        failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
        if failed or status != 0:
            for name, log in w.logs.items():
                print(f"---- {name} log ({log}) ----\n{_tail(log, 60)}")
        else:
            shutil.rmtree(d, ignore_errors=True)
        assert status == 0, f"the sidecar exited with status {status} after SIGTERM"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    """nats-server (core) and the sidecar in core ingest mode."""
    yield from _world(request, False, ())


@pytest.fixture
def js_world(request: pytest.FixtureRequest) -> Iterator[World]:
    """nats-server with JetStream and the sidecar with ingest.mode=jetstream (stream DLQ_FAILED)."""
    yield from _world(request, True, ("ingest.mode=jetstream",))
