"""The Sandbox interface against `sandrun dev`: the conformance suite."""

from __future__ import annotations

import asyncio
import io
import os
import re

import pytest

import sandrun
from sandrun import Sandbox

from .conftest import Dev

SESSION_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


async def wait_ended(client: sandrun.Client, sb: Sandbox, pid: int) -> sandrun.Completion:
    """Awaits the end of a process (process.wait), so that what follows sees it ended."""
    return await client.call(sb.id, sandrun.ProcessWaitRequest(pid=pid, timeout_seconds=20))


# Lifecycle and properties.


async def test_lifecycle(client: sandrun.Client) -> None:
    sb = await Sandbox.create()
    assert SESSION_ID.match(sb.id)
    got = await Sandbox.get(sb.id)
    assert got is not None and got.id == sb.id
    await sb.ensure_sandbox()  # exists already: nothing changes
    assert (await sb.exec_command_stateful("echo kept > note.txt"))["exit_code"] == 0
    await sb.ensure_sandbox()
    assert (await sb.file_read("note.txt")).data["content"] == "kept\n"

    assert await sb.destroy() is True
    assert await Sandbox.get(sb.id) is None
    assert await sb.destroy() is False
    # ensure_sandbox brings a destroyed sandbox back, empty.
    await sb.ensure_sandbox()
    assert (await sb.file_exists("note.txt")).data["exists"] is False
    assert await sb.destroy() is True


async def test_get_unknown_is_none(client: sandrun.Client) -> None:
    assert await Sandbox.get("never-created-" + os.urandom(4).hex()) is None


async def test_properties(sandbox: Sandbox) -> None:
    assert isinstance(sandbox.id, str) and SESSION_ID.match(sandbox.id)
    assert sandbox.cdp_url == ""
    assert sandbox.vnc_url == ""


async def test_browser_is_not_implemented(sandbox: Sandbox) -> None:
    with pytest.raises(NotImplementedError, match="no display"):
        await sandbox.get_browser()


# Stateful exec.


async def workspace(sb: Sandbox) -> str:
    """The sandbox's workspace: /workspace on Cloud Run, a directory of its own under `sandrun dev`."""
    r = await sb.exec_command_stateful("cd ~ && pwd")
    ws: str = r["cwd"]
    assert r["stdout"] == ws + "\n" and ws.startswith("/")
    return ws


async def test_exec_simple(sandbox: Sandbox) -> None:
    ws = await workspace(sandbox)
    r = await sandbox.exec_command_stateful("echo hello; echo oops >&2")
    assert r == {
        "exit_code": 0,
        "stdout": "hello\n",
        "stderr": "oops\n",
        "cwd": ws,
        "session_id": sandbox.id,
        "background_pid": None,
    }


async def test_exec_keeps_cwd_and_env(sandbox: Sandbox) -> None:
    ws = await workspace(sandbox)
    r = await sandbox.exec_command_stateful("mkdir -p src/app && cd src/app && export GREETING=hi", session_id="main")
    assert r["exit_code"] == 0 and r["cwd"] == f"{ws}/src/app" and r["session_id"] == "main"
    r = await sandbox.exec_command_stateful("pwd; echo $GREETING", session_id="main")
    assert r["stdout"] == f"{ws}/src/app\nhi\n"
    assert r["cwd"] == f"{ws}/src/app"


async def test_exec_background_pid(client: sandrun.Client, sandbox: Sandbox) -> None:
    r = await sandbox.exec_command_stateful("sleep 30 &")
    assert r["exit_code"] == 0
    pid = r["background_pid"]
    assert isinstance(pid, int) and pid > 0
    procs = {p["pid"]: p for p in await sandbox.list_background_processes()}
    assert procs[pid]["running"] is True
    assert procs[pid]["command"] == "sleep 30"


async def test_exec_nonzero_exit(sandbox: Sandbox) -> None:
    r = await sandbox.exec_command_stateful("echo before; exit 7")
    assert r["exit_code"] == 7 and r["stdout"] == "before\n"
    assert "error" not in r


async def test_exec_timeout_ends_the_process_tree(sandbox: Sandbox) -> None:
    # A child and a grandchild that outlive their parent, all in the
    # command's process group.
    r = await sandbox.exec_command_stateful("echo started; (sleep 307 &); sleep 308 & sleep 309", timeout=2)
    assert r["exit_code"] == 124
    assert r["error"]["code"] == "TIMEOUT"
    assert r["stdout"] == "started\n"
    left = await sandbox.exec_command_stateful("pgrep -f 'sleep 30[789]' || echo none")
    assert left["stdout"] == "none\n"
    assert [p for p in await sandbox.list_background_processes() if p["running"]] == []


# Background processes.


async def test_background_list_and_kill_by_pid(client: sandrun.Client, sandbox: Sandbox) -> None:
    a = (await sandbox.exec_command_stateful("sleep 101 &"))["background_pid"]
    b = (await sandbox.exec_command_stateful("sleep 102 &"))["background_pid"]
    listed = {p["pid"]: p for p in await sandbox.list_background_processes()}
    assert listed[a]["running"] and listed[b]["running"]
    assert listed[a]["session_id"] == sandbox.id and listed[a]["started_at"]

    killed = await sandbox.kill_background_process(pid=a)
    assert killed == {"killed_count": 1, "killed_pids": [a]}
    await wait_ended(client, sandbox, a)
    listed = {p["pid"]: p for p in await sandbox.list_background_processes()}
    assert listed[a]["running"] is False and listed[b]["running"] is True


async def test_background_kill_by_pattern(client: sandrun.Client, sandbox: Sandbox) -> None:
    a = (await sandbox.exec_command_stateful("sleep 111 &"))["background_pid"]
    b = (await sandbox.exec_command_stateful("sleep 112 &"))["background_pid"]
    c = (await sandbox.exec_command_stateful("sleep 121 &"))["background_pid"]
    killed = await sandbox.kill_background_process(pattern=r"sleep 11[12]")
    assert killed["killed_count"] == 2 and sorted(killed["killed_pids"]) == sorted([a, b])
    for pid in (a, b):
        await wait_ended(client, sandbox, pid)
    running = {p["pid"] for p in await sandbox.list_background_processes() if p["running"]}
    assert running == {c}


async def test_background_kill_by_session(client: sandrun.Client, sandbox: Sandbox) -> None:
    a = (await sandbox.exec_command_stateful("sleep 131 &", session_id="shell-a"))["background_pid"]
    b = (await sandbox.exec_command_stateful("sleep 132 &", session_id="shell-b"))["background_pid"]
    assert [p["pid"] for p in await sandbox.list_background_processes("shell-a")] == [a]
    killed = await sandbox.kill_background_process(session_id="shell-a")
    assert killed == {"killed_count": 1, "killed_pids": [a]}
    await wait_ended(client, sandbox, a)
    running = {p["pid"] for p in await sandbox.list_background_processes() if p["running"]}
    assert running == {b}
    # None given: every running process.
    assert (await sandbox.kill_background_process())["killed_pids"] == [b]


async def test_background_logs(client: sandrun.Client, sandbox: Sandbox) -> None:
    r = await sandbox.exec_command_stateful("for i in 1 2 3; do echo line $i; sleep 1; done &")
    pid = r["background_pid"]
    # While it runs, the logs hold what it printed so far.
    early = await client.do(sandbox.id, sandrun.ProcessWaitRequest(pid=pid, timeout_seconds=1))
    if not early.ok:
        assert early.error is not None and early.error.code == "TIMEOUT"
        partial = await sandbox.get_background_logs(pid)
        assert partial is not None and partial.startswith("line 1\n")
    await wait_ended(client, sandbox, pid)
    assert await sandbox.get_background_logs(pid) == "line 1\nline 2\nline 3\n"
    assert await sandbox.get_background_logs(999999) is None


# Files.


async def test_file_write_and_read(sandbox: Sandbox) -> None:
    ws = await workspace(sandbox)
    w = await sandbox.file_write("notes/a.txt", "one\ntwo")
    assert w.success and w.data["bytes_written"] == 7
    w = await sandbox.file_write("notes/a.txt", "three", append=True, leading_newline=True, trailing_newline=True)
    assert w.success
    r = await sandbox.file_read("notes/a.txt")
    assert r.success and r.data["content"] == "one\ntwo\nthree\n"
    assert (await sandbox.file_read(f"{ws}/notes/a.txt", start_line=1, end_line=3)).data["content"] == "two\nthree\n"
    assert (await sandbox.file_read("notes/a.txt", start_line=2)).data["content"] == "three\n"


async def test_file_write_large_and_escaped(sandbox: Sandbox) -> None:
    # Larger than a request message: through Cloud Storage.
    big = "".join(f"line {i} \"quoted\" \\ tab\t\n" for i in range(20000))
    assert len(big.encode()) > sandrun.MAX_REQUEST_BYTES
    assert (await sandbox.file_write("big.txt", big)).success
    assert (await sandbox.file_read("big.txt")).data["content"] == big
    # Appended in pieces.
    assert (await sandbox.file_write("big.txt", big, append=True)).success
    assert (await sandbox.file_read("big.txt")).data["content"] == big + big


async def test_file_missing(sandbox: Sandbox) -> None:
    r = await sandbox.file_read("no/such/file.txt")
    assert r.success is False
    assert r.data["code"] == "NOT_FOUND" and r.message is not None and r.message.startswith("NOT_FOUND: ")
    assert (await sandbox.file_exists("no/such/file.txt")).data["exists"] is False
    d = await sandbox.file_delete("no/such/file.txt")
    assert d.success is False and d.data["code"] == "NOT_FOUND"
    assert (await sandbox.file_list("no/such")).data["code"] == "NOT_FOUND"


async def test_file_exists_delete_list(sandbox: Sandbox) -> None:
    await sandbox.file_write("d/one.txt", "1")
    await sandbox.file_write("d/sub/two.txt", "2")
    assert (await sandbox.file_exists("d/one.txt")).data == {"path": "d/one.txt", "exists": True}
    listed = await sandbox.file_list("d")
    assert listed.success
    entries = {e["name"]: e for e in listed.data["entries"]}
    assert set(entries) == {"one.txt", "sub"}
    assert entries["sub"]["is_dir"] is True and entries["one.txt"]["size"] == 1
    assert entries["one.txt"]["path"] == "d/one.txt"
    assert (await sandbox.file_delete("d")).success
    assert (await sandbox.file_exists("d/one.txt")).data["exists"] is False


async def test_file_replace(sandbox: Sandbox) -> None:
    await sandbox.file_write("app.py", "print('a')\nprint('a')\n")
    r = await sandbox.file_replace("app.py", "'a'", "'b'")
    assert r.success and r.data["replaced_count"] == 2
    assert (await sandbox.file_read("app.py")).data["content"] == "print('b')\nprint('b')\n"
    none = await sandbox.file_replace("app.py", "'zzz'", "'c'")
    assert none.success is False and none.data["code"] == "FAILED_PRECONDITION"


async def test_file_search_and_find(sandbox: Sandbox) -> None:
    await sandbox.file_write("src/a.py", "def one():\n    pass\ndef two():\n")
    await sandbox.file_write("src/lib/b.py", "x = 1\n")
    await sandbox.file_write("src/readme.md", "def not_code\n")
    s = await sandbox.file_search("src/a.py", r"^def \w+\(")
    assert s.success and s.data["matches"] == ["def one():", "def two():"] and s.data["line_numbers"] == [1, 3]
    f = await sandbox.file_find("src", "**/*.py")
    assert f.success and sorted(f.data["files"]) == ["src/a.py", "src/lib/b.py"]
    ws = await workspace(sandbox)
    f = await sandbox.file_find(f"{ws}/src", "*.py")
    assert f.data["files"] == [f"{ws}/src/a.py"]


async def test_file_sudo_says_what_it_did(sandbox: Sandbox) -> None:
    w = await sandbox.file_write("s.txt", "x", sudo=True)
    assert w.success and w.message is not None and "sudo" in w.message
    r = await sandbox.file_read("s.txt", sudo=True)
    assert r.success and r.data["content"] == "x" and r.message is not None and "sudo" in r.message


async def test_file_upload_download_binary(sandbox: Sandbox) -> None:
    data = bytes(range(256)) * 4096 + b"\x00\xff"  # 1 MiB and two bytes, not UTF-8
    up = await sandbox.file_upload(io.BytesIO(data), "bin/data.bin", filename="data.bin")
    assert up.success and up.data["file_size"] == len(data) and up.data["file_path"] == "bin/data.bin"
    down = await sandbox.file_download("bin/data.bin")
    assert down.read() == data
    r = await sandbox.exec_command_stateful("sha256sum bin/data.bin | cut -c1-64")
    import hashlib

    assert r["stdout"].strip() == hashlib.sha256(data).hexdigest()


async def test_file_download_missing_raises(sandbox: Sandbox) -> None:
    with pytest.raises(sandrun.SandrunError) as e:
        await sandbox.file_download("missing.bin")
    assert e.value.code == "NOT_FOUND"


# Process control (the legacy shell API).


async def test_legacy_exec_completes(sandbox: Sandbox) -> None:
    r = await sandbox.exec_command("sh1", "/tmp", "pwd; echo out; exit 3")
    assert r.success
    assert r.data["status"] == "completed" and r.data["returncode"] == 3
    assert r.data["output"] == "/tmp\nout\n"


async def test_legacy_exec_bad_dir_is_a_tool_failure(sandbox: Sandbox) -> None:
    r = await sandbox.exec_command("sh1", "/no/such/dir", "true")
    assert r.success is False and r.data["code"] == "NOT_FOUND"


async def test_view_shell_while_running_then_kill(sandbox: Sandbox) -> None:
    r = await sandbox.exec_command("watch", "", "echo started; sleep 60")
    assert r.success and r.data["status"] == "running"
    v = await sandbox.view_shell("watch", console=True)
    assert v.success and v.data["status"] == "running" and v.data["output"] == "started\n"
    assert v.data["console"] == [{"command": "echo started; sleep 60", "output": "started\n"}]
    k = await sandbox.kill_process("watch")
    assert k.success and k.data["killed"] == [r.data["pid"]]
    w = await sandbox.wait_for_process("watch", 20)
    assert w.success and w.data["status"] == "completed" and w.data["returncode"] == 128 + 15


async def test_view_shell_of_a_running_foreground_command(sandbox: Sandbox) -> None:
    task = asyncio.create_task(sandbox.exec_command_stateful("echo fg-started; sleep 4; echo fg-done"))
    seen = None
    for _ in range(100):
        v = await sandbox.view_shell(sandbox.id)
        if v.data["status"] == "running" and v.data["output"]:
            seen = v
            break
        await asyncio.sleep(0.1)  # nothing to await: the command starts when its host takes it
    assert seen is not None, "view_shell never showed the running command"
    assert seen.data["output"] == "fg-started\n"
    assert seen.data["command"] == "echo fg-started; sleep 4; echo fg-done"
    assert (await task)["stdout"] == "fg-started\nfg-done\n"


async def test_write_to_interactive_python(sandbox: Sandbox) -> None:
    program = "import sys\nfor line in sys.stdin:\n    line = line.strip()\n    if line == 'quit':\n        break\n    print('got', line.upper(), flush=True)\nprint('bye')\n"
    await sandbox.file_write("echo.py", program)
    r = await sandbox.exec_command("py", "", "python3 -u echo.py")
    assert r.success and r.data["status"] == "running"
    assert (await sandbox.write_to_process("py", "hello")).success
    assert (await sandbox.write_to_process("py", "wor", press_enter=False)).success
    assert (await sandbox.write_to_process("py", "ld")).success
    assert (await sandbox.write_to_process("py", "quit")).success
    w = await sandbox.wait_for_process("py", 30)
    assert w.success and w.data["returncode"] == 0
    assert w.data["output"] == "got HELLO\ngot WORLD\nbye\n"


async def test_wait_for_process_still_running(sandbox: Sandbox) -> None:
    await sandbox.exec_command("slow", "", "sleep 60")
    w = await sandbox.wait_for_process("slow", 1)
    assert w.success is False and w.data["code"] == "TIMEOUT" and w.data["status"] == "running"
    assert (await sandbox.kill_process("slow")).success


async def test_unknown_shell_is_a_tool_failure(sandbox: Sandbox) -> None:
    for result in (
        await sandbox.wait_for_process("nope"),
        await sandbox.write_to_process("nope", "x"),
        await sandbox.kill_process("nope"),
    ):
        assert result.success is False and result.data["code"] == "NOT_FOUND"


# Many sandboxes, and a host replaced.


async def test_twenty_sandboxes_at_once(client: sandrun.Client) -> None:
    async def one(i: int) -> tuple[int, str, str, str]:
        sb = await Sandbox.create()
        try:
            ws = await workspace(sb)
            await sb.exec_command_stateful(f"export MARK=m{i} && mkdir -p own && cd own && echo {i} > id.txt")
            r = await sb.exec_command_stateful("echo $MARK; cat id.txt; ls ~/own")
            # Relative to the working directory, own.
            f = await sb.file_read("id.txt")
            return i, r["stdout"], r["cwd"].removeprefix(ws), f.data["content"]
        finally:
            await sb.destroy()

    results = await asyncio.gather(*(one(i) for i in range(20)))
    for i, stdout, cwd, content in results:
        assert stdout == f"m{i}\n{i}\nid.txt\n"
        assert cwd == "/own"
        assert content == f"{i}\n"


async def test_host_replaced_between_calls(client: sandrun.Client, dev: Dev) -> None:
    sb = await Sandbox.create()
    try:
        # The working directory and variables are kept in Firestore after
        # every command; workspace files only in checkpoints, which a
        # crashed host did not write: so the directory is one that exists
        # on every host.
        r = await sb.exec_command_stateful("cd /tmp && export KEEP=yes")
        assert r["cwd"] == "/tmp"
        before = await client.call(sb.id, sandrun.SessionGetRequest())
        assert before.session is not None and before.session.host
        e = dev.env
        execution = f"projects/{e['SANDRUN_PROJECT']}/locations/{e['SANDRUN_REGION']}/jobs/{e['SANDRUN_JOB']}/executions/{before.session.host}"
        # The Cloud Run fake ends the execution's process at once, as a
        # crash would: no checkpoint, no goodbye.
        killer = await asyncio.create_subprocess_exec(
            dev.binary, "emulator", "kill", execution, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(killer.communicate(), 60)
        assert killer.returncode == 0, err.decode()
        r = await sb.exec_command_stateful("pwd; echo $KEEP")
        assert "error" not in r, r
        assert r["stdout"] == "/tmp\nyes\n"
        after = await client.call(sb.id, sandrun.SessionGetRequest())
        assert after.session is not None and after.session.host and after.session.host != before.session.host
    finally:
        await sb.destroy()
