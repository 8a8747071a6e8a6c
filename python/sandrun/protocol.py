"""The wire protocol of sandrun, version 1, as Python types.

One request class per operation, each holding exactly the fields that
operation takes (``api/schema/request.schema.json`` lists them per op), and
one :class:`Completion` with the objects inside it. A field left ``None`` is
left out of the request, which the protocol reads as its zero value or
default. ``tests/test_schema.py`` checks these classes against the schema
files, so that they cannot drift apart.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Mapping, TypeVar

# The most bytes of a request message's data (docs/protocol.md, "Limits").
# The SDK refuses a larger request before publishing it.
MAX_REQUEST_BYTES = 262144
# Content that travels inline in file.write and file.read, once decoded;
# larger files go through Cloud Storage (file.upload, file.download).
MAX_INLINE_FILE_BYTES = 196608
# process.write's content, once decoded.
MAX_PROCESS_WRITE_BYTES = 65536

# The attributes of request and completion messages.
ATTR_SESSION_ID = "session_id"
ATTR_REQUEST_ID = "request_id"
ATTR_OP = "op"
ATTR_STATUS = "status"

# The error codes of docs/protocol.md, "Error codes".
ERROR_CODES = (
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "FAILED_PRECONDITION",
    "TIMEOUT",
    "HOST_LOST",
    "NOT_SUPPORTED",
    "RESOURCE_EXHAUSTED",
    "LAUNCH_FAILED",
    "ABORTED",
    "INTERNAL",
)


@dataclass(kw_only=True)
class Request:
    """The fields of one operation. Subclasses name the op in ``OP``."""

    OP: ClassVar[str] = ""

    def fields(self) -> dict[str, Any]:
        """The op's fields that are set, as they go on the wire."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}


@dataclass(kw_only=True)
class ExecRequest(Request):
    """Runs ``command`` with bash in the session (``background``: as a background process)."""

    OP: ClassVar[str] = "exec"
    command: str
    timeout_seconds: float | None = None
    env: dict[str, str] | None = None
    cwd: str | None = None
    background: bool | None = None
    keep_stdin: bool | None = None
    tty: bool | None = None


@dataclass(kw_only=True)
class SessionCreateRequest(Request):
    """Creates the session if it does not exist and starts a host for it."""

    OP: ClassVar[str] = "session.create"


@dataclass(kw_only=True)
class SessionGetRequest(Request):
    """Describes the session; NOT_FOUND when it does not exist."""

    OP: ClassVar[str] = "session.get"


@dataclass(kw_only=True)
class SessionDestroyRequest(Request):
    """Ends the session and deletes its files, state and outputs."""

    OP: ClassVar[str] = "session.destroy"


@dataclass(kw_only=True)
class FileReadRequest(Request):
    """Reads at most ``length`` bytes (196608) of a file from ``offset``."""

    OP: ClassVar[str] = "file.read"
    path: str
    offset: int | None = None
    length: int | None = None
    encoding: Literal["utf-8", "base64"] | None = None


@dataclass(kw_only=True)
class FileWriteRequest(Request):
    """Writes (or appends) at most 196608 bytes to a file."""

    OP: ClassVar[str] = "file.write"
    path: str
    content: str | None = None
    encoding: Literal["utf-8", "base64"] | None = None
    mode: str | None = None
    append: bool | None = None


@dataclass(kw_only=True)
class FileDeleteRequest(Request):
    """Deletes a file, link or directory (``recursive`` for a non-empty one)."""

    OP: ClassVar[str] = "file.delete"
    path: str
    recursive: bool | None = None


@dataclass(kw_only=True)
class FileExistsRequest(Request):
    """Says whether a path exists."""

    OP: ClassVar[str] = "file.exists"
    path: str


@dataclass(kw_only=True)
class FileListRequest(Request):
    """Lists a directory (the working directory when ``path`` is None)."""

    OP: ClassVar[str] = "file.list"
    path: str | None = None
    recursive: bool | None = None
    max_depth: int | None = None
    hidden: bool | None = None
    max_results: int | None = None


@dataclass(kw_only=True)
class FileFindRequest(Request):
    """Finds the paths below ``path`` that match the glob ``pattern``."""

    OP: ClassVar[str] = "file.find"
    pattern: str
    path: str | None = None
    max_depth: int | None = None
    hidden: bool | None = None
    max_results: int | None = None


@dataclass(kw_only=True)
class FileSearchRequest(Request):
    """Finds the lines matching the RE2 expression ``pattern``."""

    OP: ClassVar[str] = "file.search"
    pattern: str
    path: str | None = None
    include: str | None = None
    max_depth: int | None = None
    hidden: bool | None = None
    max_results: int | None = None


@dataclass(kw_only=True)
class FileReplaceRequest(Request):
    """Replaces ``old_string`` with ``new_string``, matched byte for byte."""

    OP: ClassVar[str] = "file.replace"
    path: str
    old_string: str
    new_string: str | None = None
    expected_count: int | None = None
    replace_all: bool | None = None


@dataclass(kw_only=True)
class FileUploadRequest(Request):
    """Copies a staged Cloud Storage object to ``path`` (see Client.upload)."""

    OP: ClassVar[str] = "file.upload"
    path: str
    object: str


@dataclass(kw_only=True)
class FileDownloadRequest(Request):
    """Copies a file to a Cloud Storage object the completion names (see Client.download)."""

    OP: ClassVar[str] = "file.download"
    path: str


@dataclass(kw_only=True)
class ProcessListRequest(Request):
    """Lists the session's processes."""

    OP: ClassVar[str] = "process.list"


@dataclass(kw_only=True)
class ProcessKillRequest(Request):
    """Signals the processes chosen by exactly one of ``pid``, ``pattern``, ``all``."""

    OP: ClassVar[str] = "process.kill"
    pid: int | None = None
    pattern: str | None = None
    all: bool | None = None
    signal: str | None = None
    grace_seconds: float | None = None


@dataclass(kw_only=True)
class ProcessLogsRequest(Request):
    """Reads a process's stdout and stderr logs."""

    OP: ClassVar[str] = "process.logs"
    pid: int
    offset: int | None = None
    tail_bytes: int | None = None


@dataclass(kw_only=True)
class ProcessWaitRequest(Request):
    """Waits at most ``timeout_seconds`` (default 30) for a process to end."""

    OP: ClassVar[str] = "process.wait"
    pid: int
    timeout_seconds: float | None = None


@dataclass(kw_only=True)
class ProcessWriteRequest(Request):
    """Writes to the stdin of a process started with ``keep_stdin``."""

    OP: ClassVar[str] = "process.write"
    pid: int
    content: str | None = None
    encoding: Literal["utf-8", "base64"] | None = None
    close_stdin: bool | None = None


@dataclass(kw_only=True)
class ShellViewRequest(Request):
    """Shows the foreground command running now and its output so far."""

    OP: ClassVar[str] = "shell.view"


REQUEST_TYPES: dict[str, type[Request]] = {
    cls.OP: cls
    for cls in (
        ExecRequest,
        SessionCreateRequest,
        SessionGetRequest,
        SessionDestroyRequest,
        FileReadRequest,
        FileWriteRequest,
        FileDeleteRequest,
        FileExistsRequest,
        FileListRequest,
        FileFindRequest,
        FileSearchRequest,
        FileReplaceRequest,
        FileUploadRequest,
        FileDownloadRequest,
        ProcessListRequest,
        ProcessKillRequest,
        ProcessLogsRequest,
        ProcessWaitRequest,
        ProcessWriteRequest,
        ShellViewRequest,
    )
}


def encode_request(request_id: str, session_id: str, request: Request) -> bytes:
    """The message data of a request: its JSON in UTF-8."""
    body: dict[str, Any] = {"request_id": request_id, "session_id": session_id, "op": request.OP}
    body.update(request.fields())
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# The objects inside a completion.


@dataclass(kw_only=True)
class ErrorInfo:
    """Why a completion's status is ``error``."""

    code: str
    message: str = ""


@dataclass(kw_only=True)
class SessionInfo:
    """A session, as the session operations describe it."""

    session_id: str
    status: str
    created_at: str | None = None
    last_active_at: str | None = None
    host: str | None = None
    queued: int = 0
    cwd: str | None = None


@dataclass(kw_only=True)
class FileInfo:
    """A file, directory or link."""

    path: str
    type: str
    size: int = 0
    mode: str = ""
    modified_at: str | None = None
    target: str | None = None


@dataclass(kw_only=True)
class Match:
    """A line that file.search found."""

    path: str
    line_number: int
    line: str


@dataclass(kw_only=True)
class ProcessInfo:
    """A process of the session, background or foreground."""

    pid: int
    command: str
    status: str
    parent_pid: int | None = None
    exit_code: int | None = None
    signal: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    foreground: bool = False
    host: str | None = None


@dataclass(kw_only=True)
class Timing:
    """When the request was accepted, started and finished, and how long each part took."""

    accepted_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    queue_seconds: float = 0.0
    launch_seconds: float = 0.0
    restore_seconds: float = 0.0
    run_seconds: float = 0.0
    total_seconds: float = 0.0


T = TypeVar("T")


def _build(cls: type[T], data: Mapping[str, Any]) -> T:
    # Fields this version does not know are ignored, as the protocol asks.
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(kw_only=True)
class Completion:
    """The one terminal outcome of a request (docs/protocol.md, "Completions")."""

    request_id: str
    session_id: str
    op: str
    status: Literal["ok", "error"]
    error: ErrorInfo | None = None
    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""
    stdout_encoding: str | None = None
    stderr_encoding: str | None = None
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    stdout_object: str | None = None
    stderr_object: str | None = None
    stdout_cut: bool = False
    stderr_cut: bool = False
    cwd: str | None = None
    session: SessionInfo | None = None
    content: str | None = None
    content_encoding: str | None = None
    size: int = 0
    eof: bool = False
    exists: bool | None = None
    file: FileInfo | None = None
    entries: list[FileInfo] = field(default_factory=list)
    matches: list[Match] = field(default_factory=list)
    truncated: bool = False
    replacements: int = 0
    object: str | None = None
    pid: int | None = None
    processes: list[ProcessInfo] = field(default_factory=list)
    killed: list[int] = field(default_factory=list)
    background_pids: list[int] = field(default_factory=list)
    running: ProcessInfo | None = None
    # Set on a summary whose whole completion was too large for a message:
    # the object holding it (Client.do reads it in the summary's place).
    result_object: str | None = None
    cold_start: bool = False
    pool_hit: bool = False
    execution_id: str | None = None
    duration_seconds: float = 0.0
    timing: Timing = field(default_factory=Timing)

    @property
    def ok(self) -> bool:
        """True when the operation ran (for exec, ``exit_code`` says how the command ended)."""
        return self.status == "ok"

    def stdout_data(self) -> bytes:
        """The inline stdout as bytes, decoding base64 output."""
        return _decode(self.stdout, self.stdout_encoding)

    def stderr_data(self) -> bytes:
        """The inline stderr as bytes, decoding base64 output."""
        return _decode(self.stderr, self.stderr_encoding)

    def content_data(self) -> bytes:
        """file.read's content as bytes."""
        return _decode(self.content or "", self.content_encoding)

    @classmethod
    def from_json(cls, data: bytes | str) -> Completion:
        """Decodes a completion message's data."""
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raise ValueError("a completion is a JSON object")
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Completion:
        """Builds a completion from its decoded JSON."""
        d = dict(raw)
        if isinstance(d.get("error"), dict):
            d["error"] = _build(ErrorInfo, d["error"])
        if isinstance(d.get("session"), dict):
            d["session"] = _build(SessionInfo, d["session"])
        if isinstance(d.get("file"), dict):
            d["file"] = _build(FileInfo, d["file"])
        if isinstance(d.get("running"), dict):
            d["running"] = _build(ProcessInfo, d["running"])
        if isinstance(d.get("timing"), dict):
            d["timing"] = _build(Timing, d["timing"])
        d["entries"] = [_build(FileInfo, e) for e in d.get("entries") or []]
        d["matches"] = [_build(Match, m) for m in d.get("matches") or []]
        d["processes"] = [_build(ProcessInfo, p) for p in d.get("processes") or []]
        return _build(cls, d)


def _decode(text: str, encoding: str | None) -> bytes:
    if encoding == "base64":
        return base64.b64decode(text)
    return text.encode("utf-8")
