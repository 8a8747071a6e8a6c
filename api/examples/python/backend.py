"""Run commands in a sandrun session over Pub/Sub, as a backend would.

The Python example of docs/protocol.md. Needs google-cloud-pubsub:

    pip install google-cloud-pubsub
    eval "$(cat ~/.sandrun/dev.env)"    # the local cloud of `sandrun dev`
    python3 backend.py demo 'echo hello; pwd'
"""

import base64
import json
import os
import sys
import threading
import uuid

from google.cloud import pubsub_v1

# PUBSUB_EMULATOR_HOST, when set, points both clients at the local cloud.
PROJECT = os.environ.get("SANDRUN_PROJECT") or os.environ.get("GOOGLE_CLOUD_PROJECT", "sandrun-local")
REQUESTS_TOPIC = os.environ.get("SANDRUN_REQUESTS_TOPIC", "sandrun-requests")
COMPLETIONS_TOPIC = os.environ.get("SANDRUN_COMPLETIONS_TOPIC", "sandrun-completions")

publisher = pubsub_v1.PublisherClient(
    publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
)
subscriber = pubsub_v1.SubscriberClient()


def publish(request):
    """Publish a request with ordering key = session_id and its attributes."""
    topic = publisher.topic_path(PROJECT, REQUESTS_TOPIC)
    future = publisher.publish(
        topic,
        json.dumps(request).encode("utf-8"),
        ordering_key=request["session_id"],
        session_id=request["session_id"],
        request_id=request["request_id"],
        op=request["op"],
    )
    try:
        future.result()
    except Exception:
        # A failed publish pauses the ordering key until it is resumed.
        publisher.resume_publish(topic, request["session_id"])
        raise


class Completions:
    """Receives the completions of one session and routes them by request_id.

    Pub/Sub may deliver a completion more than once, and every copy for one
    request_id has the same content: the first is kept, the rest ignored.
    """

    def __init__(self, session_id):
        self.path = subscriber.subscription_path(
            PROJECT, f"backend-{session_id}-{uuid.uuid4().hex[:8]}"
        )
        subscriber.create_subscription(
            request={
                "name": self.path,
                "topic": subscriber.topic_path(PROJECT, COMPLETIONS_TOPIC),
                "filter": f'attributes.session_id = "{session_id}"',
                "ack_deadline_seconds": 60,
                # An abandoned subscription goes away by itself after a day.
                "expiration_policy": {"ttl": {"seconds": 24 * 3600}},
            }
        )
        self.done = {}  # request_id -> completion (a long-lived backend prunes it)
        self.cond = threading.Condition()
        self.future = subscriber.subscribe(self.path, callback=self._receive)

    def _receive(self, message):
        message.ack()
        completion = json.loads(message.data)
        with self.cond:
            self.done.setdefault(completion["request_id"], completion)
            self.cond.notify_all()

    def wait(self, request_id, timeout=600):
        with self.cond:
            if not self.cond.wait_for(lambda: request_id in self.done, timeout):
                raise TimeoutError(f"no completion for request {request_id}")
            return self.done[request_id]

    def close(self):
        self.future.cancel()
        self.future.result()
        subscriber.delete_subscription(request={"subscription": self.path})


def output(completion, stream):
    """The inline stdout or stderr of a completion, as bytes."""
    if completion.get(stream + "_encoding") == "base64":
        return base64.b64decode(completion[stream])
    return completion[stream].encode("utf-8")


def main():
    session_id, command = sys.argv[1], " ".join(sys.argv[2:])
    completions = Completions(session_id)  # subscribe before publishing
    try:
        request = {
            "request_id": str(uuid.uuid4()),
            "session_id": session_id,
            "op": "exec",
            "command": command,
            "timeout_seconds": 60,
        }
        publish(request)
        done = completions.wait(request["request_id"])
    finally:
        completions.close()

    sys.stdout.buffer.write(output(done, "stdout"))
    sys.stderr.buffer.write(output(done, "stderr"))
    if "stdout_object" in done:
        print(f"(the whole stdout, {done['stdout_bytes']} bytes, is in {done['stdout_object']})", file=sys.stderr)
    code = done["exit_code"]
    if done["status"] == "error":
        print(f"{done['error']['code']}: {done['error']['message']}", file=sys.stderr)
        code = code if code > 0 else 1
    sys.exit(code)


if __name__ == "__main__":
    main()
