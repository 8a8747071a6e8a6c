"""The Python examples of docs/protocol.md run against `sandrun dev`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .conftest import Dev

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "api" / "examples" / "python"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "python"))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, env=env, cwd=EXAMPLES)


def test_backend_example(dev: Dev) -> None:
    session = "example-" + os.urandom(4).hex()
    r = run("backend.py", session, "cd /tmp && echo hello; pwd")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello\n/tmp\n"
    r = run("backend.py", session, "pwd; exit 3")
    assert r.returncode == 3 and r.stdout == "/tmp\n"


def test_transfer_example(dev: Dev, tmp_path: Path) -> None:
    session = "example-" + os.urandom(4).hex()
    data = os.urandom(3 * 1024 * 1024 + 7)
    src, copy = tmp_path / "in.bin", tmp_path / "out.bin"
    src.write_bytes(data)
    up = run("transfer.py", session, "upload", str(src), "data/in.bin")
    assert up.returncode == 0, up.stderr
    assert up.stdout == f"{src} -> data/in.bin ({len(data)} bytes)\n"
    down = run("transfer.py", session, "download", "data/in.bin", str(copy))
    assert down.returncode == 0, down.stderr
    assert copy.read_bytes() == data
