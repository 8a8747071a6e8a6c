"""The errors the SDK raises."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .protocol import Completion


class SandrunError(Exception):
    """sandrun answered a request with an error, or could not be asked.

    ``code`` is the protocol's error code (``NOT_FOUND``, ``HOST_LOST``, ...,
    see docs/protocol.md "Error codes"), or ``UNAVAILABLE`` when a request
    could not be published. ``completion`` is the error completion, when
    there is one.
    """

    def __init__(self, code: str, message: str, *, request_id: str = "", completion: Completion | None = None) -> None:
        super().__init__(f"{code}: {message}" + (f" (request {request_id})" if request_id else ""))
        self.code = code
        self.message = message
        self.request_id = request_id
        self.completion = completion


class Timeout(SandrunError, TimeoutError):
    """A deadline passed: no completion arrived in time (``completion`` is
    None), or sandrun answered ``TIMEOUT`` (a command ran past its limit, or
    process.wait's process still runs)."""


class RequestTooLarge(SandrunError):
    """The request is larger than a request message may be
    (protocol.MAX_REQUEST_BYTES); it was not published. Large files go
    through Client.upload and Client.download instead."""
