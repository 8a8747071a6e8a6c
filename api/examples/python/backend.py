"""Run a command in a sandrun session, as a backend would, with the SDK.

The Python example of docs/protocol.md. The sandrun package (python/ in
this repository) publishes the request with ordering key = session_id and
its attributes, receives completions on a subscription of its own and
routes them by request_id:

    pip install ./python
    eval "$(cat ~/.sandrun/dev.env)"    # the local cloud of `sandrun dev`
    python3 backend.py demo 'echo hello; pwd'
"""

import asyncio
import sys

import sandrun


async def main() -> int:
    session_id, command = sys.argv[1], " ".join(sys.argv[2:])
    # Config.from_env reads SANDRUN_PROJECT, the topics and the bucket;
    # PUBSUB_EMULATOR_HOST, when set, points the clients at the local cloud.
    async with sandrun.Client(sandrun.Config.from_env()) as client:
        done = await client.do(session_id, sandrun.ExecRequest(command=command, timeout_seconds=60))
    sys.stdout.buffer.write(done.stdout_data())  # base64 output decoded
    sys.stderr.buffer.write(done.stderr_data())
    if done.stdout_object:
        print(f"(the whole stdout, {done.stdout_bytes} bytes, is in {done.stdout_object})", file=sys.stderr)
    if done.error:
        print(f"{done.error.code}: {done.error.message}", file=sys.stderr)
        return done.exit_code if done.exit_code > 0 else 1
    return done.exit_code


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
