"""The Client layer against `sandrun dev`: errors, deadlines, limits, retries, routing."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import pytest
from google.api_core import exceptions as gexc

import sandrun

from .conftest import Dev


def session() -> str:
    return "py-" + os.urandom(6).hex()


async def test_error_completion_raises_typed_error(client: sandrun.Client) -> None:
    with pytest.raises(sandrun.SandrunError) as e:
        await client.call(session(), sandrun.SessionGetRequest())
    assert e.value.code == "NOT_FOUND"
    assert e.value.completion is not None and e.value.completion.status == "error"
    # do() hands the same completion back instead.
    done = await client.do(session(), sandrun.SessionGetRequest())
    assert done.status == "error" and done.error is not None and done.error.code == "NOT_FOUND"
    assert done.exit_code == -1


async def test_command_timeout_raises_timeout(client: sandrun.Client) -> None:
    with pytest.raises(sandrun.Timeout) as e:
        await client.call(session(), sandrun.ExecRequest(command="echo a; sleep 30", timeout_seconds=1))
    assert e.value.code == "TIMEOUT"
    assert e.value.completion is not None and e.value.completion.exit_code == 124
    assert e.value.completion.stdout == "a\n"


async def test_deadline_raises_timeout_and_the_session_goes_on(client: sandrun.Client) -> None:
    s = session()
    await client.call(s, sandrun.ExecRequest(command="true"))
    with pytest.raises(sandrun.Timeout) as e:
        await client.do(s, sandrun.ExecRequest(command="sleep 3"), timeout=0.5)
    assert e.value.completion is None and "within" in e.value.message
    assert isinstance(e.value, TimeoutError)
    done = await client.call(s, sandrun.ExecRequest(command="echo next"))
    assert done.stdout == "next\n"


async def test_answers_too_large_for_a_message_come_whole(client: sandrun.Client) -> None:
    # Issue 19: answers whose JSON is over what a completion message
    # carries arrive as a summary naming a result object; do() returns the
    # whole completion read from it, and the host serves on.
    s = session()
    long = "d" * 250
    first = await client.call(
        s,
        sandrun.ExecRequest(
            command="head -c 196608 /dev/zero > zeros\n"
            "mkdir tree && cd tree && for i in $(seq 0 100); do mkdir d$i && (cd d$i && touch $(seq -f f%g 0 99)); done && cd ..\n"
            f'p=long; for i in $(seq 12); do p="$p/{long}"; done; mkdir -p "$p" && (cd "$p" && touch $(seq -f "{"f" * 200}%g" 0 999))'
        ),
    )
    read = await client.call(s, sandrun.FileReadRequest(path="zeros"))
    assert read.content_data() == bytes(196608) and read.eof and read.result_object is None
    listed = await client.call(s, sandrun.FileListRequest(path="tree", recursive=True, max_results=10000))
    assert len(listed.entries) == 10000 and listed.truncated
    found = await client.call(s, sandrun.FileFindRequest(path="long", pattern="**/f*"))
    assert len(found.entries) == 1000 and len(found.entries[0].path) > 3000
    out = await client.call(s, sandrun.ExecRequest(command="head -c 65536 /dev/zero; head -c 65536 /dev/zero >&2"))
    assert out.stdout_data() == bytes(65536) and out.stderr_data() == bytes(65536)
    for done in (read, listed, found, out):
        assert done.execution_id == first.execution_id


async def test_lone_surrogate_is_refused_before_publishing(client: sandrun.Client) -> None:
    s = session()
    with pytest.raises(sandrun.SandrunError) as e:
        await client.do(s, sandrun.ExecRequest(command="echo \ud800"))
    assert e.value.code == "INVALID_ARGUMENT" and "surrogate" in e.value.message
    # Nothing reached sandrun: the session was never created.
    done = await client.do(s, sandrun.SessionGetRequest())
    assert done.error is not None and done.error.code == "NOT_FOUND"


async def test_oversized_request_is_refused_before_publishing(client: sandrun.Client) -> None:
    s = session()
    command = "echo " + "x" * sandrun.MAX_REQUEST_BYTES
    with pytest.raises(sandrun.RequestTooLarge) as e:
        await client.do(s, sandrun.ExecRequest(command=command))
    assert str(sandrun.MAX_REQUEST_BYTES) in e.value.message
    # Nothing reached sandrun: the session was never created.
    done = await client.do(s, sandrun.SessionGetRequest())
    assert done.error is not None and done.error.code == "NOT_FOUND"
    # The Sandbox reports it as sandrun reports a refused request.
    sb = sandrun.Sandbox(s, client)
    r = await sb.exec_command_stateful(command)
    assert r["exit_code"] == -1 and r["error"]["code"] == "INVALID_ARGUMENT"
    t = await sb.exec_command("sh", "", command)
    assert t.success is False and t.data["code"] == "INVALID_ARGUMENT" and str(sandrun.MAX_REQUEST_BYTES) in (t.message or "")
    done = await client.do(s, sandrun.SessionGetRequest())
    assert done.error is not None and done.error.code == "NOT_FOUND"


async def test_publish_error_is_retried_with_the_same_request_id(client: sandrun.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    s = session()
    publisher = client._publisher
    real = publisher.publish
    sent: list[dict[str, Any]] = []

    def flaky(topic: str, data: bytes, **kwargs: Any) -> Any:
        sent.append(kwargs)
        if len(sent) == 1:
            raise gexc.ServiceUnavailable("injected: the first publish fails")  # type: ignore[no-untyped-call]
        return real(topic, data, **kwargs)

    monkeypatch.setattr(publisher, "publish", flaky)
    done = await client.call(s, sandrun.ExecRequest(command="echo ran >> runs.txt; cat runs.txt"), request_id="retry-" + s)
    monkeypatch.undo()
    assert [m["request_id"] for m in sent] == ["retry-" + s, "retry-" + s]
    assert all(m["ordering_key"] == s for m in sent)
    assert done.request_id == "retry-" + s and done.stdout == "ran\n"
    # The same request id again runs nothing more: its first completion is the answer.
    await client.send(s, sandrun.ExecRequest(command="echo ran >> runs.txt"), request_id="retry-" + s)
    after = await client.call(s, sandrun.FileReadRequest(path="runs.txt"))
    assert after.content == "ran\n"


async def test_two_clients_route_their_own_completions(client: sandrun.Client) -> None:
    # Two backend replicas: each has its own subscription and receives
    # every completion, and each hands over only those it awaits.
    other = await sandrun.Client(sandrun.Config.from_env()).start()
    try:
        assert other.subscription != client.subscription
        sessions = [session() for _ in range(3)]

        async def run(c: sandrun.Client, s: str, i: int) -> str:
            done = await c.call(s, sandrun.ExecRequest(command=f"echo {i}"))
            return done.stdout

        jobs = [run(c, s, i) for i, (c, s) in enumerate((c, s) for s in sessions for c in (client, other) for _ in range(3))]
        outs = await asyncio.gather(*jobs)
        assert outs == [f"{i}\n" for i in range(len(jobs))]
    finally:
        await other.close()


async def test_filtered_subscription(client: sandrun.Client) -> None:
    s = session()
    cfg = sandrun.Config.from_env()
    cfg.filter = f'attributes.session_id = "{s}"'
    filtered = await sandrun.Client(cfg).start()
    try:
        done = await filtered.call(s, sandrun.ExecRequest(command="echo mine"))
        assert done.stdout == "mine\n" and done.session_id == s
    finally:
        await filtered.close()


async def test_every_op_is_answered(client: sandrun.Client) -> None:
    # One request of each op through the typed classes, with the fields the
    # completion carries for it.
    s = session()
    c = client
    assert (await c.call(s, sandrun.SessionCreateRequest())).session is not None
    bg = await c.call(s, sandrun.ExecRequest(command="read x; echo got $x", background=True, keep_stdin=True))
    assert bg.pid
    await c.call(s, sandrun.FileWriteRequest(path="a/b.txt", content="hello\nworld\n"))
    assert (await c.call(s, sandrun.FileReadRequest(path="a/b.txt"))).content == "hello\nworld\n"
    assert (await c.call(s, sandrun.FileExistsRequest(path="a/b.txt"))).exists is True
    assert [e.path for e in (await c.call(s, sandrun.FileListRequest(path="a"))).entries] == ["b.txt"]
    assert [e.path for e in (await c.call(s, sandrun.FileFindRequest(pattern="**/*.txt"))).entries] == ["a/b.txt"]
    assert [m.line_number for m in (await c.call(s, sandrun.FileSearchRequest(pattern="wor"))).matches] == [2]
    assert (await c.call(s, sandrun.FileReplaceRequest(path="a/b.txt", old_string="world", new_string="there"))).replacements == 1
    assert [p.pid for p in (await c.call(s, sandrun.ProcessListRequest())).processes] == [bg.pid]
    await c.call(s, sandrun.ProcessWriteRequest(pid=bg.pid, content="yes\n", close_stdin=True))
    waited = await c.call(s, sandrun.ProcessWaitRequest(pid=bg.pid, timeout_seconds=20))
    assert waited.exit_code == 0
    assert (await c.call(s, sandrun.ProcessLogsRequest(pid=bg.pid))).stdout == "got yes\n"
    assert (await c.call(s, sandrun.ShellViewRequest())).running is None
    other = await c.call(s, sandrun.ExecRequest(command="sleep 50", background=True))
    assert (await c.call(s, sandrun.ProcessKillRequest(pid=other.pid, signal="KILL"))).killed == [other.pid]
    await c.call(s, sandrun.FileDeleteRequest(path="a", recursive=True))
    with pytest.raises(sandrun.SandrunError) as e:
        await c.call(s, sandrun.FileDownloadRequest(path="a/b.txt"))
    assert e.value.code == "NOT_FOUND"
    assert (await c.call(s, sandrun.SessionDestroyRequest())).ok


def test_large_transfer_in_constant_memory(dev: Dev, tmp_path: Any) -> None:
    """A 100 MB upload and download, compared by SHA-256, measured in a
    process of its own so that its peak memory is the transfer's."""
    size = 100 * 1024 * 1024
    src = tmp_path / "big.bin"
    import hashlib

    h = hashlib.sha256()
    with open(src, "wb") as f:
        for _ in range(size // (1 << 20)):
            block = os.urandom(1 << 20)
            h.update(block)
            f.write(block)
    script = r'''
import asyncio, hashlib, json, resource, sys, tracemalloc
import sandrun

async def main() -> None:
    async with sandrun.Client(sandrun.Config.from_env()) as c:
        sb = await sandrun.Sandbox.create(client=c)
        base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        tracemalloc.start()
        with open(sys.argv[1], "rb") as f:
            up = await sb.file_upload(f, "big/copy.bin")
        out = await sb.file_download("big/copy.bin")
        h = hashlib.sha256()
        while chunk := out.read(1 << 20):
            h.update(chunk)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps({"ok": up.success, "size": up.data["file_size"], "sha256": h.hexdigest(),
                          "python_peak": peak, "rss_growth": rss - base_rss, "rss": rss}))
        await sb.destroy()

asyncio.run(main())
'''
    run = subprocess.run([sys.executable, "-c", script, str(src)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout.strip().splitlines()[-1])
    print("100 MB transfer:", got)
    assert got["ok"] and got["size"] == size
    assert got["sha256"] == h.hexdigest()
    # Constant memory: a few transfer chunks (4 MiB each), not the file.
    assert got["python_peak"] < size // 4, got
    assert got["rss_growth"] < size // 2, got


async def test_missing_subscription_raises_unavailable(client: sandrun.Client) -> None:
    # A subscription that cannot be read ends the receiver's stream for
    # good: what awaits a completion gets UNAVAILABLE at once, not a wait
    # until its deadline.
    cfg = sandrun.Config.from_env()
    cfg.subscription = "sandrun-missing-" + os.urandom(4).hex()
    c = await sandrun.Client(cfg).start()
    try:
        with pytest.raises(sandrun.SandrunError) as e:
            await c.do(session(), sandrun.SessionCreateRequest(), timeout=60)
        assert e.value.code == "UNAVAILABLE" and "receiving completions stopped" in e.value.message, e.value
        assert not isinstance(e.value, sandrun.Timeout)
    finally:
        await c.close()


async def test_deleted_subscription_raises_instead_of_hanging(client: sandrun.Client) -> None:
    c = await sandrun.Client(sandrun.Config.from_env()).start()
    try:
        s = session()
        await c.call(s, sandrun.ExecRequest(command="true"))  # the stream is open
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: c._subscriber.delete_subscription(request={"subscription": c.subscription}, timeout=30)
        )
        # Pub/Sub ends the stream (UNAVAILABLE); the emulator keeps it open
        # and silent (Timeout at the deadline). Either way, an error.
        with pytest.raises(sandrun.SandrunError):
            await c.do(s, sandrun.ExecRequest(command="true"), timeout=5)
    finally:
        c._temporary = False  # nothing left to delete
        await c.close()
