"""The agent backend's Sandbox interface, on sandrun.

A Sandbox is one sandrun session: its id is the session id, its files are
the session's workspace, its shell is the session's (working directory and
exported variables kept from one command to the next, across hosts). Each
method maps onto the protocol's operations (docs/python.md has the table).

Two kinds of failure are kept apart. What the interface reports in a
ToolResult (a missing file, a command that could not start, a process that
does not exist) comes back as ``ToolResult(success=False, message="CODE:
message", data={"code": CODE})``, never as an exception. A failure of
sandrun itself (a topic that cannot be reached, a deadline passed) raises
SandrunError or Timeout.
"""

from __future__ import annotations

import base64
import io
import json
import posixpath
import re
import tempfile
import uuid
from dataclasses import asdict, dataclass
from typing import Any, BinaryIO

from .client import TRANSFER_CHUNK_BYTES, Client, default_client, raise_for_status
from .errors import RequestTooLarge, SandrunError
from .protocol import (
    MAX_PROCESS_WRITE_BYTES,
    MAX_REQUEST_BYTES,
    Completion,
    ErrorInfo,
    ExecRequest,
    FileDeleteRequest,
    FileExistsRequest,
    FileFindRequest,
    FileListRequest,
    FileReadRequest,
    FileReplaceRequest,
    FileSearchRequest,
    FileWriteRequest,
    ProcessKillRequest,
    ProcessListRequest,
    ProcessLogsRequest,
    ProcessWaitRequest,
    ProcessWriteRequest,
    Request,
    SessionCreateRequest,
    SessionDestroyRequest,
    SessionGetRequest,
    ShellViewRequest,
)

# file_write sends content up to this size in one file.write (as text, or
# base64 when JSON escapes would push the message over its limit); larger
# content goes through Cloud Storage (file.upload), or in appends of this
# size when appending.
WRITE_PIECE_BYTES = 96 * 1024
# file_read reads whole files piece by piece, up to this much.
MAX_READ_BYTES = 16 * 1024 * 1024
# exec_command waits this long for its command before answering "running".
LEGACY_EXEC_WAIT_SECONDS = 3.0
# The output the shell methods return: the last this many bytes of each of
# a process's stdout and stderr (the most process.logs returns at once).
LOG_TAIL_BYTES = 65536
# kill_process and kill_background_process: SIGTERM, then SIGKILL what
# still runs this long after.
KILL_GRACE_SECONDS = 3.0

_NO_SUDO = (
    "sudo is not available in a sandrun sandbox: commands and file operations run as the sandbox user (uid 1000), "
    "who owns the workspace"
)


@dataclass
class ToolResult:
    """What a tool method returns: ``success``, a ``message`` for people
    (the error code and message on failure), and ``data``."""

    success: bool
    message: str | None = None
    data: Any = None


def _failed(done: Completion, **data: Any) -> ToolResult:
    code = done.error.code if done.error else "INTERNAL"
    message = done.error.message if done.error else "error"
    return ToolResult(success=False, message=f"{code}: {message}", data={"code": code, **data})


def _text(b: bytes) -> str:
    return b.decode("utf-8", errors="replace")


def _output(done: Completion) -> str:
    """A completion's stdout and stderr as one text, as a terminal shows them."""
    return _text(done.stdout_data()) + _text(done.stderr_data())


class Sandbox:
    """A sandbox of an agent backend, served by sandrun.

    Use ``await Sandbox.create()`` or ``await Sandbox.get(id)``; both use
    the process's shared Client (``sandrun.default_client()``, configured
    from the environment) unless given one.
    """

    def __init__(self, id: str, client: Client) -> None:
        self._id = id
        self._client = client
        # The legacy shell API's shells (exec_command's session_id): the
        # process each one runs now, and which shell started each pid. They
        # live in this object: another Sandbox object of the same id sees
        # the processes, not the shell names.
        self._shells: dict[str, int] = {}
        self._owner: dict[int, str] = {}

    async def _do(self, request: Request) -> Completion:
        # A request over the message limit is answered here as sandrun
        # answers one (INVALID_ARGUMENT, exit_code -1), without publishing
        # it, so that the interface reports it like any refused request.
        try:
            return await self._client.do(self._id, request)
        except RequestTooLarge as e:
            return Completion(
                request_id=e.request_id,
                session_id=self._id,
                op=request.OP,
                status="error",
                error=ErrorInfo(code=e.code, message=e.message),
                exit_code=-1,
            )

    # Lifecycle.

    @classmethod
    async def create(cls, client: Client | None = None, id: str | None = None) -> Sandbox:
        """Creates a sandbox (a new session, with a host started for it)."""
        client = client or await default_client()
        sandbox = cls(id or "sbx-" + uuid.uuid4().hex[:24], client)
        await sandbox.ensure_sandbox()
        return sandbox

    @classmethod
    async def get(cls, id: str, client: Client | None = None) -> Sandbox | None:
        """The sandbox ``id``, or None when it does not exist (or was destroyed)."""
        client = client or await default_client()
        done = await client.do(id, SessionGetRequest())
        if done.error and done.error.code == "NOT_FOUND":
            return None
        _raise(done)
        return cls(id, client)

    @property
    def id(self) -> str:
        return self._id

    @property
    def cdp_url(self) -> str:
        """Empty: sandboxes on Cloud Run Jobs have no browser."""
        return ""

    @property
    def vnc_url(self) -> str:
        """Empty: sandboxes on Cloud Run Jobs have no display."""
        return ""

    @property
    def client(self) -> Client:
        return self._client

    async def ensure_sandbox(self) -> None:
        """Makes sure the sandbox exists and has a host starting (it creates
        the session again, empty, after a destroy)."""
        _raise(await self._do(SessionCreateRequest()))

    async def destroy(self) -> bool:
        """Destroys the sandbox: its processes end, its files are deleted.
        False when it did not exist."""
        done = await self._do(SessionDestroyRequest())
        if done.error and done.error.code == "NOT_FOUND":
            return False
        _raise(done)
        return True

    async def get_browser(self) -> Any:
        raise NotImplementedError(
            "sandrun sandboxes run on Cloud Run Jobs, which have no display, so there is no browser to drive"
        )

    # Shell.

    async def exec_command_stateful(self, command: str, session_id: str | None = None, timeout: int = 120) -> dict[str, Any]:
        """Runs ``command`` in the sandbox's shell and waits for it, at most
        ``timeout`` seconds (then its whole process tree is killed and
        exit_code is 124). The working directory and exported variables
        carry to the next command. ``background_pid`` is the pid of what
        the command left running (``server &``), else None; ``error`` is
        present when sandrun reported one (code and message)."""
        shell = session_id or self._id
        done = await self._do(ExecRequest(command=command, timeout_seconds=timeout))
        background_pid = done.background_pids[0] if done.background_pids else None
        for pid in done.background_pids:
            self._owner[pid] = shell
        result: dict[str, Any] = {
            "exit_code": done.exit_code,
            "stdout": _text(done.stdout_data()),
            "stderr": _text(done.stderr_data()),
            "cwd": done.cwd or "",
            "session_id": shell,
            "background_pid": background_pid,
        }
        if done.stdout_object:
            result["stdout_object"] = done.stdout_object
        if done.stderr_object:
            result["stderr_object"] = done.stderr_object
        if done.error:
            result["error"] = {"code": done.error.code, "message": done.error.message}
        return result

    async def exec_command(self, session_id: str, exec_dir: str, command: str) -> ToolResult:
        """Starts ``command`` in ``exec_dir`` as the process of shell
        ``session_id``, with its stdin open for write_to_process, and waits
        a few seconds for it: ``data["status"]`` is ``completed`` (with
        ``returncode``) or ``running``; ``data["output"]`` is its output so far."""
        started = await self._do(
            ExecRequest(command=command, cwd=exec_dir or None, background=True, keep_stdin=True)
        )
        if not started.ok or started.pid is None:
            return _failed(started, session_id=session_id, command=command)
        pid = started.pid
        self._shells[session_id] = pid
        self._owner[pid] = session_id
        waited = await self._do(ProcessWaitRequest(pid=pid, timeout_seconds=LEGACY_EXEC_WAIT_SECONDS))
        logs = await self._do(ProcessLogsRequest(pid=pid, tail_bytes=LOG_TAIL_BYTES))
        data = {"session_id": session_id, "command": command, "pid": pid, "output": _output(logs)}
        if waited.ok:
            data.update(status="completed", returncode=waited.exit_code)
        else:
            data.update(status="running", returncode=None)
        return ToolResult(success=True, data=data)

    async def view_shell(self, session_id: str, console: bool = False) -> ToolResult:
        """The output so far of shell ``session_id``'s process; for a shell
        exec_command did not start here, what the sandbox's foreground
        command (an exec_command_stateful still running) wrote so far.
        ``console`` adds ``data["console"]``, a list of the commands with
        their output."""
        pid = self._shells.get(session_id)
        if pid is None:
            view = await self._do(ShellViewRequest())
            if not view.ok:
                return _failed(view, session_id=session_id)
            running = view.running
            data: dict[str, Any] = {
                "session_id": session_id,
                "output": _output(view),
                "status": "running" if running else "idle",
                "command": running.command if running else None,
            }
            if console:
                data["console"] = [{"command": running.command, "output": data["output"]}] if running else []
            return ToolResult(success=True, data=data)
        logs = await self._do(ProcessLogsRequest(pid=pid, tail_bytes=LOG_TAIL_BYTES))
        if not logs.ok:
            return _failed(logs, session_id=session_id)
        info = await self._process(pid)
        out = _output(logs)
        data = {
            "session_id": session_id,
            "pid": pid,
            "output": out,
            "status": "running" if info and info.status == "running" else "completed",
            "returncode": info.exit_code if info else None,
            "command": info.command if info else None,
        }
        if console:
            data["console"] = [{"command": data["command"], "output": out}]
        return ToolResult(success=True, data=data)

    async def wait_for_process(self, session_id: str, seconds: int | None = None) -> ToolResult:
        """Waits for shell ``session_id``'s process to end, at most
        ``seconds`` (default 30). ``success`` is False when it still runs."""
        pid = self._shells.get(session_id)
        if pid is None:
            return _no_shell(session_id)
        waited = await self._do(ProcessWaitRequest(pid=pid, timeout_seconds=seconds or None))
        if not waited.ok:
            result = _failed(waited, session_id=session_id, pid=pid)
            if waited.error and waited.error.code == "TIMEOUT":
                result.data["status"] = "running"
            return result
        logs = await self._do(ProcessLogsRequest(pid=pid, tail_bytes=LOG_TAIL_BYTES))
        return ToolResult(
            success=True,
            data={"session_id": session_id, "pid": pid, "status": "completed", "returncode": waited.exit_code, "output": _output(logs)},
        )

    async def write_to_process(self, session_id: str, input_text: str, press_enter: bool = True) -> ToolResult:
        """Writes ``input_text`` (and a newline, with ``press_enter``) to the
        stdin of shell ``session_id``'s process."""
        pid = self._shells.get(session_id)
        if pid is None:
            return _no_shell(session_id)
        data = (input_text + ("\n" if press_enter else "")).encode("utf-8")
        # process.write takes 64 KiB at a time: longer input goes in pieces.
        for start in range(0, max(len(data), 1), MAX_PROCESS_WRITE_BYTES):
            piece = data[start : start + MAX_PROCESS_WRITE_BYTES]
            done = await self._do(
                ProcessWriteRequest(pid=pid, content=base64.b64encode(piece).decode("ascii"), encoding="base64")
            )
            if not done.ok:
                return _failed(done, session_id=session_id, pid=pid)
        return ToolResult(success=True, data={"session_id": session_id, "pid": pid, "bytes_written": len(data)})

    async def kill_process(self, session_id: str) -> ToolResult:
        """Ends shell ``session_id``'s process (SIGTERM, then SIGKILL)."""
        pid = self._shells.get(session_id)
        if pid is None:
            return _no_shell(session_id)
        done = await self._do(ProcessKillRequest(pid=pid, grace_seconds=KILL_GRACE_SECONDS))
        if not done.ok:
            return _failed(done, session_id=session_id, pid=pid)
        return ToolResult(success=True, data={"session_id": session_id, "pid": pid, "status": "terminated", "killed": done.killed})

    # Background processes.

    async def list_background_processes(self, session_id: str | None = None) -> list[dict[str, Any]]:
        """The sandbox's background processes, running and ended; with
        ``session_id``, those that shell started."""
        done = await self._do(ProcessListRequest())
        _raise(done)
        out = []
        for p in done.processes:
            if p.foreground:
                continue
            owner = self._owner.get(p.pid, self._id)
            if session_id is not None and owner != session_id:
                continue
            out.append(
                {
                    "pid": p.pid,
                    "command": p.command,
                    "running": p.status == "running",
                    "started_at": p.started_at,
                    "session_id": owner,
                    "status": p.status,
                    "exit_code": p.exit_code,
                }
            )
        return out

    async def kill_background_process(
        self, pid: int | None = None, session_id: str | None = None, pattern: str | None = None
    ) -> dict[str, Any]:
        """Ends background processes: the one ``pid``, those whose command
        line matches the regular expression ``pattern``, those shell
        ``session_id`` started, or with none given all of them."""
        if pid is not None:
            requests = [ProcessKillRequest(pid=pid, grace_seconds=KILL_GRACE_SECONDS)]
        elif pattern is not None:
            requests = [ProcessKillRequest(pattern=pattern, grace_seconds=KILL_GRACE_SECONDS)]
        elif session_id is not None:
            procs = await self.list_background_processes(session_id)
            requests = [ProcessKillRequest(pid=p["pid"], grace_seconds=KILL_GRACE_SECONDS) for p in procs if p["running"]]
        else:
            requests = [ProcessKillRequest(all=True, grace_seconds=KILL_GRACE_SECONDS)]
        killed: list[int] = []
        for req in requests:
            done = await self._do(req)
            if done.error and done.error.code == "NOT_FOUND":
                continue  # ended meanwhile, or never was
            _raise(done)
            killed.extend(done.killed)
        return {"killed_count": len(killed), "killed_pids": killed}

    async def get_background_logs(self, pid: int, session_id: str | None = None) -> str | None:
        """The output of background process ``pid`` (stdout, then stderr),
        its last 64 KiB of each; None when there is no such process."""
        done = await self._do(ProcessLogsRequest(pid=pid, tail_bytes=LOG_TAIL_BYTES))
        if done.error and done.error.code == "NOT_FOUND":
            return None
        _raise(done)
        return _output(done)

    async def _process(self, pid: int) -> Any:
        done = await self._do(ProcessListRequest())
        _raise(done)
        return next((p for p in done.processes if p.pid == pid), None)

    # Files.

    async def file_write(
        self,
        file: str,
        content: str,
        append: bool = False,
        leading_newline: bool = False,
        trailing_newline: bool = False,
        sudo: bool = False,
    ) -> ToolResult:
        """Writes ``content`` to ``file`` (creating it and its directories),
        or appends it; of any size."""
        text = ("\n" if leading_newline else "") + content + ("\n" if trailing_newline else "")
        raw = text.encode("utf-8")
        note = _NO_SUDO if sudo else None
        if len(raw) <= WRITE_PIECE_BYTES:
            done = await self._write_piece(file, text, raw, append)
        elif not append:
            try:
                done = await self._client.upload(self._id, file, io.BytesIO(raw))
            except SandrunError as e:
                if e.completion is None:
                    raise
                done = e.completion
        else:
            for start in range(0, len(raw), WRITE_PIECE_BYTES):
                piece = raw[start : start + WRITE_PIECE_BYTES]
                done = await self._write_piece(file, None, piece, True)
                if not done.ok:
                    break
        if not done.ok:
            result = _failed(done, file=file)
            if note:
                result.message = f"{result.message} ({note})"
            return result
        return ToolResult(success=True, message=note, data={"file": file, "bytes_written": len(raw)})

    async def _write_piece(self, file: str, text: str | None, raw: bytes, append: bool) -> Completion:
        # JSON escapes can make a text larger on the wire than in the file;
        # base64 of WRITE_PIECE_BYTES always fits in a request.
        if text is not None and len(json.dumps(text, ensure_ascii=False).encode("utf-8")) < MAX_REQUEST_BYTES - 4096:
            return await self._do(FileWriteRequest(path=file, content=text, append=append or None))
        req = FileWriteRequest(path=file, content=base64.b64encode(raw).decode("ascii"), encoding="base64", append=append or None)
        return await self._do(req)

    async def file_read(
        self, file: str, start_line: int | None = None, end_line: int | None = None, sudo: bool = False
    ) -> ToolResult:
        """Reads ``file`` (``data["content"]``), or its lines from
        ``start_line`` (0-based) to ``end_line`` (exclusive)."""
        chunks: list[bytes] = []
        offset = 0
        truncated = False
        while True:
            done = await self._do(FileReadRequest(path=file, offset=offset, encoding="base64"))
            if not done.ok:
                result = _failed(done, file=file)
                if sudo:
                    result.message = f"{result.message} ({_NO_SUDO})"
                return result
            piece = done.content_data()
            chunks.append(piece)
            offset += len(piece)
            if done.eof or not piece:
                break
            if offset >= MAX_READ_BYTES:
                truncated = True
                break
        content = _text(b"".join(chunks))
        if start_line is not None or end_line is not None:
            content = "".join(content.splitlines(keepends=True)[start_line:end_line])
        message = _NO_SUDO if sudo else None
        if truncated:
            message = f"only the first {MAX_READ_BYTES} bytes were read; use file_download for the whole file"
        return ToolResult(success=True, message=message, data={"file": file, "content": content})

    async def file_exists(self, path: str) -> ToolResult:
        """``data["exists"]``: whether ``path`` exists."""
        done = await self._do(FileExistsRequest(path=path))
        if not done.ok:
            return _failed(done, path=path)
        return ToolResult(success=True, data={"path": path, "exists": bool(done.exists)})

    async def file_delete(self, path: str) -> ToolResult:
        """Deletes a file, or a directory with everything in it."""
        done = await self._do(FileDeleteRequest(path=path, recursive=True))
        if not done.ok:
            return _failed(done, path=path)
        return ToolResult(success=True, data={"path": path, "deleted": True})

    async def file_list(self, path: str) -> ToolResult:
        """The entries of directory ``path``: ``data["entries"]``, each with
        ``name``, ``path`` (joined to ``path``), ``type``, ``size``, ``mode``,
        ``modified_at``, ``is_dir``."""
        done = await self._do(FileListRequest(path=path))
        if not done.ok:
            return _failed(done, path=path)
        entries = [
            {
                "name": posixpath.basename(e.path),
                "path": posixpath.join(path, e.path),
                "type": e.type,
                "is_dir": e.type == "dir",
                "size": e.size,
                "mode": e.mode,
                "modified_at": e.modified_at,
            }
            for e in done.entries
        ]
        return ToolResult(success=True, message="truncated" if done.truncated else None, data={"path": path, "entries": entries})

    async def file_replace(self, file: str, old_str: str, new_str: str, sudo: bool = False) -> ToolResult:
        """Replaces every occurrence of ``old_str`` in ``file`` with
        ``new_str``; ``success`` is False when there is none."""
        done = await self._do(FileReplaceRequest(path=file, old_string=old_str, new_string=new_str, replace_all=True))
        if not done.ok:
            result = _failed(done, file=file)
            if sudo:
                result.message = f"{result.message} ({_NO_SUDO})"
            return result
        return ToolResult(success=True, message=_NO_SUDO if sudo else None, data={"file": file, "replaced_count": done.replacements})

    async def file_search(self, file: str, regex: str, sudo: bool = False) -> ToolResult:
        """The lines of ``file`` (or of the files below a directory) matching
        ``regex`` (RE2 syntax: Python's, without backreferences and
        lookaround): ``data["matches"]`` the lines, ``data["line_numbers"]``
        their numbers (from 1)."""
        done = await self._do(FileSearchRequest(path=file, pattern=regex))
        if not done.ok:
            return _failed(done, file=file)
        return ToolResult(
            success=True,
            message=_NO_SUDO if sudo else None,
            data={
                "file": file,
                "matches": [m.line for m in done.matches],
                "line_numbers": [m.line_number for m in done.matches],
                "results": [asdict(m) for m in done.matches],
            },
        )

    async def file_find(self, path: str, glob_pattern: str) -> ToolResult:
        """The paths below ``path`` matching ``glob_pattern`` (``**/*.py``
        descends; ``*.py`` does not): ``data["files"]``, joined to ``path``."""
        done = await self._do(FileFindRequest(path=path, pattern=_relative_glob(glob_pattern)))
        if not done.ok:
            return _failed(done, path=path)
        return ToolResult(success=True, data={"path": path, "files": [posixpath.join(path, e.path) for e in done.entries]})

    async def file_upload(self, file_data: BinaryIO, path: str, filename: str | None = None) -> ToolResult:
        """Copies what ``file_data`` holds to ``path``, streaming it through
        Cloud Storage (memory does not grow with the file)."""
        try:
            done = await self._client.upload(self._id, path, file_data, name=filename)
        except SandrunError as e:
            if e.completion is None:
                raise
            return _failed(e.completion, file_path=path)
        size = done.file.size if done.file else 0
        return ToolResult(success=True, data={"file_path": path, "file_size": size, "success": True})

    async def file_download(self, path: str) -> BinaryIO:
        """The content of ``path`` as a binary file object, positioned at its
        start. It streams through Cloud Storage into a temporary file that
        stays in memory up to 4 MiB and goes to disk beyond. Raises
        SandrunError (code NOT_FOUND for a missing file)."""
        out = tempfile.SpooledTemporaryFile(max_size=TRANSFER_CHUNK_BYTES)
        try:
            await self._client.download(self._id, path, out)  # type: ignore[arg-type]
        except BaseException:
            out.close()
            raise
        out.seek(0)
        return out  # type: ignore[return-value]


_raise = raise_for_status


def _no_shell(session_id: str) -> ToolResult:
    return ToolResult(
        success=False,
        message=f"NOT_FOUND: shell session {session_id!r} has no process: start one with exec_command",
        data={"code": "NOT_FOUND", "session_id": session_id},
    )


def _relative_glob(pattern: str) -> str:
    # The protocol's globs are relative to the directory searched: a
    # leading "./" or "/" names it, and is dropped.
    return re.sub(r"^(\./|/)+", "", pattern) or "*"
