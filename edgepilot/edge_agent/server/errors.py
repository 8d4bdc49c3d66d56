"""Request errors that map to a gRPC status and name the request field at fault.

Details never copy unbounded client input: values quoted in a message go through
:func:`clip`, and a whole message is cut at :data:`MAX_DETAILS` characters (the status
details travel in an HTTP/2 trailer, which has a size limit of its own)."""

from __future__ import annotations

import grpc

MAX_DETAILS = 1024        # characters of a status message / ErrorDetail.message
MAX_QUOTED = 64           # characters of one client-supplied value quoted in a message


def clip(value, limit: int = MAX_QUOTED) -> str:
    """``repr(value)`` cut to ``limit`` characters (with the original length) for messages."""
    text = repr(value) if isinstance(value, (str, bytes)) else str(value)
    if len(text) <= limit:
        return text
    size = len(value) if hasattr(value, "__len__") else len(text)
    return f"{text[:limit]}... ({size} long)"


def bounded(message: str, limit: int = MAX_DETAILS) -> str:
    return message if len(message) <= limit else message[:limit - 15] + "... (truncated)"


class RequestError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str, field: str = ""):
        field = field[:MAX_QUOTED]
        message = bounded(message, MAX_DETAILS - len(field) - 2)
        super().__init__(f"{field}: {message}" if field else message)
        self.code = code
        self.field = field
        self.message = message

    @property
    def details(self) -> str:
        return str(self)


def invalid(field: str, message: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message, field)
