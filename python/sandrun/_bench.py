"""The Python side of `sandrun bench`'s "python" measurement.

    python -m sandrun._bench SESSION

Starts a Client from the environment, runs one exec in SESSION (so that it
has a host), prints "ready", then for each line N read from stdin runs N
execs of `true` one after another and prints their latencies, publish to
completion received, in milliseconds, as one JSON list. The bench
alternates these rounds with the same requests through the Go client.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from .client import Client, Config
from .protocol import ExecRequest


async def main(session_id: str) -> None:
    loop = asyncio.get_running_loop()
    async with Client(Config.from_env()) as client:
        await client.call(session_id, ExecRequest(command="true"))
        print("ready", flush=True)
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            out = []
            for _ in range(int(line)):
                start = time.perf_counter()
                await client.call(session_id, ExecRequest(command="true"))
                out.append((time.perf_counter() - start) * 1000)
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
