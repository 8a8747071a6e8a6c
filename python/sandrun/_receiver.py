"""Reading one subscription with StreamingPull, acknowledging on the stream.

The Pub/Sub client's own ``SubscriberClient.subscribe`` sends a unary
ModifyAckDeadline for every response before it runs the callbacks (a
"receipt modack", for its lease management), and then hands each message
to a thread pool: one more RPC and one more thread on the path of every
completion, measured at 1.5 to 2 ms per call on the local cloud. A
completion needs neither: it is handled in microseconds, so this receiver
reads the stream of the same official client (``streaming_pull``) on one
thread, hands each message's data on, and acknowledges its messages on the
stream itself.

What it keeps of the client's behaviour: it reconnects, with a capped
backoff, when the stream ends with a retryable error (the service ends
streams from time to time, and the client does not always retry
UNAVAILABLE or UNKNOWN); it sends a heartbeat on an idle stream; and it
reports an error that retrying cannot fix (the subscription was deleted,
permission denied) once, and stops.
"""

from __future__ import annotations

import queue
import secrets
import threading
from collections.abc import Callable, Iterator
from typing import Any

from google.api_core import exceptions as gexc
from google.pubsub_v1.types import StreamingPullRequest

# Errors after which the stream is opened again: the service ends streams
# with these in the normal course of things.
RETRYABLE = (
    gexc.DeadlineExceeded,
    gexc.ServiceUnavailable,
    gexc.InternalServerError,
    gexc.Unknown,
    gexc.Aborted,
    gexc.ResourceExhausted,
    gexc.Cancelled,
    gexc.GatewayTimeout,
)
# Seconds a message may stay unacknowledged before Pub/Sub delivers it
# again; acknowledgements go out right after each response.
STREAM_ACK_DEADLINE = 60
# An idle stream gets an empty request this often, so that proxies and the
# service keep it open.
HEARTBEAT_SECONDS = 30.0


class Receiver:
    """Reads ``subscription`` until ``stop``: ``on_data(bytes)`` for each
    message (called on the receiver's thread, one message at a time),
    ``on_fatal(error)`` once if the stream cannot be kept open."""

    def __init__(
        self,
        subscriber: Any,
        subscription: str,
        on_data: Callable[[bytes], None],
        on_fatal: Callable[[BaseException], None],
    ) -> None:
        self._subscriber = subscriber
        self._subscription = subscription
        self._on_data = on_data
        self._on_fatal = on_fatal
        self._stopping = threading.Event()
        self._client_id = "sandrun-" + secrets.token_hex(8)
        self._lock = threading.Lock()
        self._stream: Any = None
        self._acks: queue.SimpleQueue[list[str] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sandrun-completions", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Ends the stream and waits at most ``timeout`` seconds for the thread."""
        self._stopping.set()
        with self._lock:
            self._acks.put(None)
            if self._stream is not None:
                self._stream.cancel()
        self._thread.join(timeout)

    def _run(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            acks: queue.SimpleQueue[list[str] | None] = queue.SimpleQueue()
            try:
                with self._lock:
                    if self._stopping.is_set():
                        return
                    self._acks = acks
                    self._stream = self._subscriber.streaming_pull(requests=self._requests(acks), timeout=None)
                for response in self._stream:
                    backoff = 0.1
                    ids = []
                    for received in response.received_messages:
                        ids.append(received.ack_id)
                        self._on_data(received.message.data)
                    if ids:
                        acks.put(ids)
            except RETRYABLE:
                pass
            except Exception as e:  # a stream that retrying cannot mend
                if not self._stopping.is_set():
                    self._on_fatal(e)
                return
            finally:
                acks.put(None)  # ends this stream's request iterator
            # The stream ended by itself or with a retryable error.
            if self._stopping.wait(backoff):
                return
            backoff = min(backoff * 2, 10.0)

    def _requests(self, acks: queue.SimpleQueue[list[str] | None]) -> Iterator[StreamingPullRequest]:
        # gRPC reads this iterator on a thread of its own.
        yield StreamingPullRequest(
            subscription=self._subscription,
            stream_ack_deadline_seconds=STREAM_ACK_DEADLINE,
            client_id=self._client_id,
            max_outstanding_messages=1000,
        )
        while True:
            try:
                ids = acks.get(timeout=HEARTBEAT_SECONDS)
            except queue.Empty:
                yield StreamingPullRequest()
                continue
            if ids is None:
                return
            yield StreamingPullRequest(ack_ids=ids)
