"""Copy files of any size into and out of a sandrun session, with the SDK.

The file transfer example of docs/protocol.md. Client.upload stages the
file in Cloud Storage under the session's transfers and sends file.upload;
Client.download sends file.download and reads the object it names. Both
stream, so memory does not grow with the file:

    pip install ./python
    eval "$(cat ~/.sandrun/dev.env)"    # the local cloud of `sandrun dev`
    python3 transfer.py demo upload big.csv data/big.csv
    python3 transfer.py demo download data/big.csv copy.csv
"""

import asyncio
import sys

import sandrun


async def main() -> None:
    session_id, direction, source, target = sys.argv[1:5]
    # SANDRUN_BUCKET names the deployment's bucket (sandrun-local on the
    # local cloud); STORAGE_EMULATOR_HOST, when set, points at the local cloud.
    async with sandrun.Client(sandrun.Config.from_env()) as client:
        if direction == "upload":
            with open(source, "rb") as f:
                done = await client.upload(session_id, target, f)
            assert done.file is not None
            print(f"{source} -> {done.file.path} ({done.file.size} bytes)")
        elif direction == "download":
            with open(target, "wb") as f:
                done = await client.download(session_id, source, f)
            print(f"{source} -> {target} ({done.size} bytes)")
        else:
            sys.exit("usage: transfer.py SESSION upload|download SOURCE TARGET")


if __name__ == "__main__":
    asyncio.run(main())
