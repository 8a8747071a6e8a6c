"""Starts `sandrun dev` on free ports for the session, and a Client on it.

The sandrun program is $SANDRUN_BIN when set (CI builds it once), else it
is built here from the repository with `go build`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import sandrun

REPO = Path(__file__).resolve().parents[2]
READY_LINE = "sandrun is running"


@dataclass
class Dev:
    """A running `sandrun dev`: its program, home and the environment it wrote."""

    binary: str
    home: Path
    env: dict[str, str]
    log: Path


def _binary(tmp: Path) -> str:
    given = os.environ.get("SANDRUN_BIN")
    if given:
        return given
    go = shutil.which("go") or "/usr/local/go/bin/go"
    out = tmp / "sandrun"
    subprocess.run([go, "build", "-o", str(out), "./cmd/sandrun"], cwd=REPO, check=True, timeout=600)
    return str(out)


def _read_env(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        if key:
            env[key] = value
    return env


@pytest.fixture(scope="session")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    tmp = tmp_path_factory.mktemp("sandrun")
    binary = _binary(tmp)
    home = tmp / "home"
    log = tmp / "dev.log"
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(
            # A short lease, so that a replaced host's session is served
            # again soon after its host was killed.
            [binary, "dev", "--home", str(home), "--base-port", "0", "--lease-ttl", "3s", "--reaper-interval", "1s"],
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
        )
        ready = threading.Event()

        def watch() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                if READY_LINE in line:
                    ready.set()

        threading.Thread(target=watch, daemon=True).start()
        try:
            if not ready.wait(180):
                raise RuntimeError(f"sandrun dev did not start within 180s; its log is {log}")
            env = _read_env(home / "dev.env")
            saved = dict(os.environ)
            # The Google clients read the emulator hosts from the environment.
            os.environ.update(env)
            try:
                yield Dev(binary=binary, home=home, env=env, log=log)
            finally:
                os.environ.clear()
                os.environ.update(saved)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@pytest.fixture(scope="session")
async def client(dev: Dev) -> AsyncIterator[sandrun.Client]:
    # The deadline of a request without a time limit of its own: long
    # enough for a cold start on a loaded machine, short enough that a
    # lost completion fails the test rather than hanging it.
    c = await sandrun.Client(sandrun.Config.from_env()).start()
    c.config.margin_seconds = 120
    sandrun.set_default_client(c)
    yield c
    sandrun.set_default_client(None)
    await c.close()


@pytest.fixture
async def sandbox(client: sandrun.Client) -> AsyncIterator[sandrun.Sandbox]:
    sb = await sandrun.Sandbox.create()
    yield sb
    await sb.destroy()
