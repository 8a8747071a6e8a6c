"""Copy files of any size into and out of a sandrun session.

The file transfer example of docs/protocol.md. Files travel through Cloud
Storage: the client stages an upload in the session's transfers and sends
file.upload; file.download answers with the object to read. Needs
google-cloud-pubsub and google-cloud-storage, and backend.py next to it:

    pip install google-cloud-pubsub google-cloud-storage
    eval "$(cat ~/.sandrun/dev.env)"    # the local cloud of `sandrun dev`
    python3 transfer.py demo upload big.csv data/big.csv
    python3 transfer.py demo download data/big.csv copy.csv
"""

import os
import sys
import uuid

from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from backend import PROJECT, Completions, publish

# The deployment's bucket: `terraform output bucket`, or sandrun-local on
# the local cloud (dev.env sets SANDRUN_BUCKET).
BUCKET = os.environ.get("SANDRUN_BUCKET", "sandrun-local")

if os.environ.get("STORAGE_EMULATOR_HOST"):
    # The client talks to the local cloud, which takes no credentials.
    gcs = storage.Client(project=PROJECT, credentials=AnonymousCredentials())
else:
    gcs = storage.Client(project=PROJECT)


def call(completions, request):
    """Publish a request and return its completion; raise on an error."""
    publish(request)
    done = completions.wait(request["request_id"])
    if done["status"] == "error":
        error = done["error"]
        raise RuntimeError(f"{request['op']} {request['path']}: {error['code']}: {error['message']}")
    return done


def upload(completions, session_id, local_file, path):
    """Copy local_file to path in the session; return the file's description."""
    request_id = str(uuid.uuid4())
    name = f"sessions/{session_id}/transfers/{request_id}/{os.path.basename(local_file)}"
    # The client uploads in chunks: memory does not grow with the file.
    gcs.bucket(BUCKET).blob(name).upload_from_filename(local_file)
    done = call(completions, {
        "request_id": request_id,
        "session_id": session_id,
        "op": "file.upload",
        "path": path,
        "object": f"gs://{BUCKET}/{name}",
    })
    return done["file"]


def download(completions, session_id, path, local_file):
    """Copy path of the session to local_file; return its size."""
    done = call(completions, {
        "request_id": str(uuid.uuid4()),
        "session_id": session_id,
        "op": "file.download",
        "path": path,
    })
    bucket, name = done["object"].removeprefix("gs://").split("/", 1)
    gcs.bucket(bucket).blob(name).download_to_filename(local_file)
    return done.get("size", 0)


def main():
    session_id, direction, source, target = sys.argv[1:5]
    completions = Completions(session_id)  # subscribe before publishing
    try:
        if direction == "upload":
            info = upload(completions, session_id, source, target)
            print(f"{source} -> {info['path']} ({info['size']} bytes)")
        elif direction == "download":
            size = download(completions, session_id, source, target)
            print(f"{source} -> {target} ({size} bytes)")
        else:
            sys.exit("usage: transfer.py SESSION upload|download SOURCE TARGET")
    finally:
        completions.close()


if __name__ == "__main__":
    main()
