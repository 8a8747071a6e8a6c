"""An asyncio client of sandrun's Pub/Sub protocol.

It publishes requests to the requests topic with ordering key = session_id
and the attributes session_id, request_id and op, and receives completions
on one subscription of its own to the completions topic, handing each to
the request that awaits it by request_id (the first copy; Pub/Sub may
deliver one more than once). It does what the Go client
(``client/client.go``) does, the same way: a temporary subscription per
client unless one is given, a filter when asked, staging of large files
under ``sessions/SESSION/transfers/REQUEST/NAME``.

The official Google clients underneath are synchronous and threaded: their
blocking calls run in the event loop's default executor; completions are
read by a thread of the client's own (``_receiver``, StreamingPull of the
official client) that decodes each and hands it to the loop with
``call_soon_threadsafe``; a publish's future is awaited through
``asyncio.wrap_future``. Every await has a deadline.
"""

from __future__ import annotations

import asyncio
import functools
import io
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Mapping, TypeVar

from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import pubsub_v1, storage

from ._receiver import Receiver
from .errors import RequestTooLarge, SandrunError, Timeout
from .protocol import (
    ATTR_OP,
    ATTR_REQUEST_ID,
    ATTR_SESSION_ID,
    MAX_REQUEST_BYTES,
    Completion,
    ExecRequest,
    FileDownloadRequest,
    FileUploadRequest,
    ProcessWaitRequest,
    Request,
    encode_request,
)

T = TypeVar("T")

# Cloud Storage transfers move this much at a time: what memory holds of a
# file, whatever its size (a multiple of 256 KiB, as resumable uploads ask).
TRANSFER_CHUNK_BYTES = 4 * 1024 * 1024


@dataclass
class Config:
    """Where sandrun is, and how long to wait for it.

    ``from_env`` reads the variables that ``sandrun dev`` writes to
    ``dev.env`` (and a deployment's ``terraform output`` names).
    """

    project: str = "sandrun-local"
    requests_topic: str = "sandrun-requests"
    completions_topic: str = "sandrun-completions"
    # The deployment's bucket, where uploads are staged.
    bucket: str = "sandrun-local"
    # An existing subscription to the completions topic that this client
    # alone reads. None: the client creates a temporary one, deleted by
    # close() and expiring by itself after a day if close never runs.
    subscription: str | None = None
    # For a temporary subscription: which completions it receives, as in
    # 'attributes.session_id = "s1"' or 'hasPrefix(attributes.session_id, "tenant1-")'.
    filter: str = ""
    # How often a request is published before a publish error is raised;
    # every attempt carries the same request_id, so sandrun runs it once.
    publish_attempts: int = 4
    # Added to an operation's own time limit (exec's timeout_seconds,
    # process.wait's) to give the deadline of awaiting its completion; the
    # whole deadline of operations without a time limit. It covers the
    # queue and a host's cold start.
    margin_seconds: float = 300.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """SANDRUN_PROJECT (or GOOGLE_CLOUD_PROJECT), SANDRUN_REQUESTS_TOPIC,
        SANDRUN_COMPLETIONS_TOPIC, SANDRUN_BUCKET, SANDRUN_COMPLETIONS_SUBSCRIPTION
        and SANDRUN_COMPLETIONS_FILTER, each with the default above when
        unset. (SANDRUN_SUBSCRIPTION, which dev.env also sets, is the
        dispatcher's subscription to the requests topic, not a client's.)"""
        env = os.environ if environ is None else environ
        c = cls()
        c.project = env.get("SANDRUN_PROJECT") or env.get("GOOGLE_CLOUD_PROJECT") or c.project
        c.requests_topic = env.get("SANDRUN_REQUESTS_TOPIC") or c.requests_topic
        c.completions_topic = env.get("SANDRUN_COMPLETIONS_TOPIC") or c.completions_topic
        c.bucket = env.get("SANDRUN_BUCKET") or c.bucket
        c.subscription = env.get("SANDRUN_COMPLETIONS_SUBSCRIPTION") or None
        c.filter = env.get("SANDRUN_COMPLETIONS_FILTER") or ""
        return c


def new_request_id() -> str:
    """A fresh request id (a UUID): unique across sessions, as routing by request_id needs."""
    return str(uuid.uuid4())


class Client:
    """Publishes requests and awaits their completions. One per process is
    enough, shared by all sessions and tasks; use it from the event loop
    that started it.

        async with sandrun.Client(sandrun.Config.from_env()) as c:
            done = await c.call("s1", sandrun.ExecRequest(command="ls"))
    """

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config.from_env()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._publisher: Any = None
        self._subscriber: Any = None
        self._receiver: Receiver | None = None
        self._gcs: Any = None
        self._subscription = ""
        self._temporary = False
        self._waiters: dict[str, asyncio.Future[Completion]] = {}
        self._stopped: BaseException | None = None
        self._closed = False

    @property
    def subscription(self) -> str:
        """The subscription this client receives completions on."""
        return self._subscription

    @property
    def requests_topic_path(self) -> str:
        return _path(self.config.project, "topics", self.config.requests_topic)

    async def start(self, timeout: float = 60.0) -> Client:
        """Connects, and subscribes to the completions topic before anything is published."""
        if self._loop is not None:
            return self
        self._loop = asyncio.get_running_loop()
        try:
            await self._connect(timeout)
        except BaseException:
            self._loop = None
            if self._subscriber is not None:
                self._subscriber.close()
            raise
        return self

    async def _connect(self, timeout: float) -> None:
        cfg = self.config
        # The clients look for credentials when made, which can mean a
        # request to the metadata server: off the loop.
        self._publisher = await self._run(
            timeout,
            pubsub_v1.PublisherClient,
            # A request is awaited: send it at once rather than after the
            # default batching delay of 10 ms.
            batch_settings=pubsub_v1.types.BatchSettings(max_latency=0.001),
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True),
        )
        self._subscriber = await self._run(timeout, pubsub_v1.SubscriberClient)
        if cfg.subscription:
            self._subscription = _path(cfg.project, "subscriptions", cfg.subscription)
        else:
            self._subscription = _path(cfg.project, "subscriptions", "sandrun-client-" + secrets.token_hex(6))
            request = {
                "name": self._subscription,
                "topic": _path(cfg.project, "topics", cfg.completions_topic),
                "filter": cfg.filter,
                "ack_deadline_seconds": 30,
                # Pub/Sub's shortest expiry: an abandoned subscription goes away.
                "expiration_policy": {"ttl": {"seconds": 24 * 3600}},
            }
            try:
                await self._run(timeout, self._subscriber.create_subscription, request=request, timeout=timeout)
            except gexc.GoogleAPICallError as e:
                raise SandrunError("UNAVAILABLE", f"create subscription to {request['topic']}: {e}") from e
            self._temporary = True
        self._receiver = Receiver(self._subscriber, self._subscription, self._on_data, self._on_fatal)
        self._receiver.start()

    async def __aenter__(self) -> Client:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self, timeout: float = 30.0) -> None:
        """Stops receiving, fails what still awaits a completion, deletes a
        temporary subscription and closes the connections."""
        if self._closed or self._loop is None:
            return
        self._closed = True
        self._fail_waiters(SandrunError("UNAVAILABLE", "the client was closed"))
        try:
            if self._receiver is not None:
                await self._run(timeout, self._receiver.stop, timeout)
            await self._run(timeout, self._publisher.stop)
            if self._temporary:
                await self._run(
                    timeout, self._subscriber.delete_subscription, request={"subscription": self._subscription}, timeout=timeout
                )
        finally:
            self._subscriber.close()

    # Receiving completions.

    def _on_data(self, data: bytes) -> None:
        # On the receiver's thread: decode here, hand over to the loop.
        try:
            done = Completion.from_json(data)
        except (ValueError, TypeError):
            return  # not a completion; nothing awaits it
        self._to_loop(self._deliver, done)

    def _deliver(self, done: Completion) -> None:
        # The first copy of a completion goes to its waiter; later copies
        # find none and are dropped, as are other clients' completions.
        fut = self._waiters.pop(done.request_id, None)
        if fut is not None and not fut.done():
            fut.set_result(done)

    def _on_fatal(self, err: BaseException) -> None:
        # On the receiver's thread, once, when the stream cannot be kept open.
        if not self._closed:
            self._to_loop(self._stream_ended, err)

    def _to_loop(self, fn: Callable[[T], None], arg: T) -> None:
        # From another thread: run fn(arg) on the client's loop.
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(fn, arg)
        except RuntimeError:
            pass  # the loop closed meanwhile

    def _stream_ended(self, err: BaseException) -> None:
        self._stopped = err
        self._fail_waiters(SandrunError("UNAVAILABLE", f"receiving completions stopped: {self._stopped}"))

    def _fail_waiters(self, err: SandrunError) -> None:
        waiters, self._waiters = self._waiters, {}
        for fut in waiters.values():
            if not fut.done():
                fut.set_exception(err)

    # Requests.

    def _check_usable(self) -> None:
        if self._loop is None:
            raise SandrunError("FAILED_PRECONDITION", "the client is not started: await client.start() first")
        if self._closed:
            raise SandrunError("FAILED_PRECONDITION", "the client is closed")
        if self._stopped is not None:
            raise SandrunError("UNAVAILABLE", f"receiving completions stopped: {self._stopped}")

    def deadline_for(self, request: Request) -> float:
        """How long ``do`` awaits the completion of request by default."""
        margin = self.config.margin_seconds
        if isinstance(request, ExecRequest) and not request.background:
            return (request.timeout_seconds or 600) + margin
        if isinstance(request, ProcessWaitRequest):
            return (request.timeout_seconds or 30) + margin
        return margin

    async def send(self, session_id: str, request: Request, *, request_id: str | None = None, timeout: float = 60.0) -> str:
        """Publishes a request without awaiting its completion; returns its request_id."""
        self._check_usable()
        request_id = request_id or new_request_id()
        await self._publish(session_id, request_id, request, time.monotonic() + timeout)
        return request_id

    async def do(
        self, session_id: str, request: Request, *, request_id: str | None = None, timeout: float | None = None
    ) -> Completion:
        """Publishes a request and returns its completion, whatever its status.

        A completion too large for a message arrives as a summary naming its
        ``result_object``: the whole completion is read from that object
        and returned in its place.

        Raises Timeout when no completion arrives within ``timeout`` seconds
        (default: ``deadline_for(request)``), RequestTooLarge before
        publishing a request over the message limit, and SandrunError
        (code UNAVAILABLE) when it cannot be published or received.
        """
        self._check_usable()
        assert self._loop is not None
        request_id = request_id or new_request_id()
        limit = self.deadline_for(request) if timeout is None else timeout
        deadline = time.monotonic() + limit
        # Await before publishing, so that a fast completion is not missed.
        fut: asyncio.Future[Completion] = self._loop.create_future()
        self._waiters[request_id] = fut
        try:
            await self._publish(session_id, request_id, request, deadline)
            remaining = deadline - time.monotonic()
            try:
                done = await asyncio.wait_for(asyncio.shield(fut), max(remaining, 0.001))
            except asyncio.TimeoutError:
                raise Timeout("TIMEOUT", f"no completion of {request.OP} within {limit:.0f}s", request_id=request_id) from None
            if done.result_object:
                done = await self._fetch_result(done, deadline)
            return done
        finally:
            if self._waiters.get(request_id) is fut:
                del self._waiters[request_id]

    async def call(
        self, session_id: str, request: Request, *, request_id: str | None = None, timeout: float | None = None
    ) -> Completion:
        """As ``do``, but an error completion raises: Timeout for code
        TIMEOUT, SandrunError with the code for the others."""
        done = await self.do(session_id, request, request_id=request_id, timeout=timeout)
        raise_for_status(done)
        return done

    async def _publish(self, session_id: str, request_id: str, request: Request, deadline: float) -> None:
        try:
            data = encode_request(request_id, session_id, request)
        except UnicodeEncodeError as e:
            # A lone surrogate ("\ud800") is no character: sandrun answers
            # INVALID_ARGUMENT, so it is not sent.
            raise SandrunError(
                "INVALID_ARGUMENT",
                f"the {request.OP} request holds {e.object[e.start:e.end]!r}, half of a UTF-16 surrogate pair,"
                " which is no character and cannot be sent as UTF-8; nothing was sent",
                request_id=request_id,
            ) from None
        if len(data) > MAX_REQUEST_BYTES:
            raise RequestTooLarge(
                "INVALID_ARGUMENT",
                f"the {request.OP} request is {len(data)} bytes, over the {MAX_REQUEST_BYTES}-byte limit of a request message;"
                " nothing was sent (move large files with upload and download)",
                request_id=request_id,
            )
        attrs = {ATTR_SESSION_ID: session_id, ATTR_REQUEST_ID: request_id, ATTR_OP: request.OP}
        topic = self.requests_topic_path
        attempts = max(1, self.config.publish_attempts)
        for attempt in range(1, attempts + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Timeout("TIMEOUT", f"publishing {request.OP} did not finish in time", request_id=request_id)
            try:
                # publish() only queues the message (the client's own
                # threads send it): it does not block the loop.
                fut = self._publisher.publish(topic, data, ordering_key=session_id, **attrs)
                await asyncio.wait_for(asyncio.wrap_future(fut), remaining)
                return
            except asyncio.TimeoutError:
                self._publisher.resume_publish(topic, session_id)
                raise Timeout("TIMEOUT", f"publishing {request.OP} did not finish in time", request_id=request_id) from None
            except Exception as e:
                # A failed publish pauses the session's ordering key: resume
                # it, and send the same request (same request_id) again.
                self._publisher.resume_publish(topic, session_id)
                if attempt == attempts:
                    raise SandrunError(
                        "UNAVAILABLE", f"publish {request.OP} to {topic} failed {attempts} times: {e}", request_id=request_id
                    ) from e
                await asyncio.sleep(min(0.2 * 2 ** (attempt - 1), 2.0, max(deadline - time.monotonic(), 0)))

    # Large files.

    async def upload(
        self,
        session_id: str,
        path: str,
        src: BinaryIO,
        *,
        name: str | None = None,
        timeout: float | None = None,
    ) -> Completion:
        """Copies what ``src`` holds to ``path`` in the session, through
        Cloud Storage: it streams ``src`` to
        gs://BUCKET/sessions/SESSION/transfers/REQUEST_ID/NAME in chunks of
        TRANSFER_CHUNK_BYTES, then sends file.upload with that request_id.
        Memory does not grow with the file. Raises as ``call`` does."""
        self._check_usable()
        deadline = time.monotonic() + (self.config.margin_seconds if timeout is None else timeout)
        request_id = new_request_id()
        name = name or os.path.basename(path.rstrip("/")) or "file"
        object_name = f"sessions/{session_id}/transfers/{request_id}/{name}"
        gcs = await self._storage(deadline)
        blob = gcs.bucket(self.config.bucket).blob(object_name, chunk_size=TRANSFER_CHUNK_BYTES)
        try:
            await self._run(
                deadline - time.monotonic(),
                blob.upload_from_file,
                src,
                content_type="application/octet-stream",
                rewind=False,
                timeout=max(deadline - time.monotonic(), 1),
            )
        except (gexc.GoogleAPICallError, OSError, ValueError) as e:
            raise SandrunError("UNAVAILABLE", f"stage {name} in gs://{self.config.bucket}/{object_name}: {e}", request_id=request_id) from e
        try:
            return await self.call(
                session_id,
                FileUploadRequest(path=path, object=f"gs://{self.config.bucket}/{object_name}"),
                request_id=request_id,
                timeout=max(deadline - time.monotonic(), 0.001),
            )
        finally:
            await self._delete_quietly(blob)

    async def download(self, session_id: str, path: str, dest: BinaryIO, *, timeout: float | None = None) -> Completion:
        """Copies ``path`` of the session into ``dest``: sends file.download
        and streams the object its completion names, in chunks. Memory does
        not grow with the file. Raises as ``call`` does."""
        self._check_usable()
        deadline = time.monotonic() + (self.config.margin_seconds if timeout is None else timeout)
        done = await self.call(session_id, FileDownloadRequest(path=path), timeout=deadline - time.monotonic())
        if done.object:
            await self.read_object(done.object, dest, timeout=max(deadline - time.monotonic(), 0.001))
        return done

    async def read_object(self, uri: str, dest: BinaryIO, *, timeout: float | None = None, delete: bool = True) -> int:
        """Streams the Cloud Storage object ``uri`` (gs://bucket/name) that a
        completion names, such as a long command's whole stdout, into
        ``dest``; returns the bytes copied. A transfer object is deleted
        afterwards unless ``delete`` is False."""
        self._check_usable()
        deadline = time.monotonic() + (self.config.margin_seconds if timeout is None else timeout)
        bucket, _, name = uri.removeprefix("gs://").partition("/")
        if not uri.startswith("gs://") or not name:
            raise SandrunError("INVALID_ARGUMENT", f"{uri!r} is not a gs://bucket/name")
        gcs = await self._storage(deadline)
        blob = gcs.bucket(bucket).blob(name, chunk_size=TRANSFER_CHUNK_BYTES)
        start = dest.tell() if dest.seekable() else 0
        try:
            await self._run(deadline - time.monotonic(), blob.download_to_file, dest, timeout=max(deadline - time.monotonic(), 1))
        except (gexc.GoogleAPICallError, OSError, ValueError) as e:
            raise SandrunError("UNAVAILABLE", f"read {uri}: {e}") from e
        copied = (dest.tell() - start) if dest.seekable() else -1
        if delete and "/transfers/" in name:
            await self._delete_quietly(blob)
        return copied

    async def _fetch_result(self, summary: Completion, deadline: float) -> Completion:
        """The whole completion that a summary's result object holds."""
        assert summary.result_object is not None
        buf = io.BytesIO()
        await self.read_object(summary.result_object, buf, timeout=max(deadline - time.monotonic(), 0.001))
        try:
            return Completion.from_json(buf.getvalue())
        except (ValueError, TypeError) as e:
            raise SandrunError(
                "INTERNAL", f"{summary.result_object} does not hold a completion: {e}", request_id=summary.request_id
            ) from e

    async def _storage(self, deadline: float) -> Any:
        if self._gcs is None:
            if os.environ.get("STORAGE_EMULATOR_HOST"):
                # The local cloud takes no credentials.
                make = functools.partial(storage.Client, project=self.config.project, credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
            else:
                make = functools.partial(storage.Client, project=self.config.project)
            self._gcs = await self._run(deadline - time.monotonic(), make)
        return self._gcs

    async def _delete_quietly(self, blob: Any) -> None:
        # Transfer objects expire with their session and by the bucket's
        # lifecycle rule anyway: deleting them sooner is a courtesy.
        try:
            await self._run(10.0, blob.delete, timeout=10)
        except Exception:
            pass

    async def _run(self, limit: float, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Runs a blocking call of a Google client on the loop's executor,
        awaiting it at most ``limit`` seconds."""
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(None, functools.partial(fn, *args, **kwargs)), max(limit, 0.001))
        except asyncio.TimeoutError:
            raise Timeout("TIMEOUT", f"{getattr(fn, '__name__', 'a call')} did not finish within {limit:.0f}s") from None


def raise_for_status(done: Completion) -> None:
    """Raises the error of an error completion: Timeout for code TIMEOUT,
    SandrunError for the others."""
    if done.status == "ok":
        return
    code = done.error.code if done.error else "INTERNAL"
    message = done.error.message if done.error else "an error completion without an error"
    cls = Timeout if code == "TIMEOUT" else SandrunError
    raise cls(code, message, request_id=done.request_id, completion=done)


def _path(project: str, kind: str, name: str) -> str:
    return name if "/" in name else f"projects/{project}/{kind}/{name}"


_default: Client | None = None


def set_default_client(client: Client | None) -> None:
    """Makes ``client`` the one Sandbox uses when given none."""
    global _default
    _default = client


async def default_client() -> Client:
    """The process's shared client, started from the environment
    (Config.from_env) on first use."""
    global _default
    loop = asyncio.get_running_loop()
    if _default is None or _default._closed or (_default._loop is not None and _default._loop is not loop):
        _default = Client(Config.from_env())
    return await _default.start()
