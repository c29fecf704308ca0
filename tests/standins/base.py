"""What the stand-ins share: a real HTTP server on a free local port, served from a thread while a
``with`` block runs, that records every request; and, for the sinks' stand-ins, programmed faults
and holds that park a request until the test releases it.

A stand-in subclasses ``StandIn`` (or ``ProgrammableStandIn``) and implements ``_serve(handler)`` for
each POST, under no lock; it reads the body with ``read_body``, records under ``self._lock`` with
``_record`` and answers with ``send``.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

REQUEST_BYTES_MAX = 1024 * 1024
HOLD_TIMEOUT_S = 30.0
SHUTDOWN_POLL_S = 0.02  # how often serve_forever checks for shutdown; the default 0.5 s slows every test

R = TypeVar("R")  # what a stand-in records of one request

Answer = tuple[int, bytes, dict[str, str]]  # status, body, headers (Content-Length is added)


def read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """The request body, at most ``REQUEST_BYTES_MAX`` bytes of it."""
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(min(length, REQUEST_BYTES_MAX))


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class StandIn(Generic[R]):
    """``with SomeStandIn() as server:`` serves on ``server.origin`` until the block ends."""

    protocol_version = "HTTP/1.0"  # of the answers; HTTP/1.1 keeps connections open

    def __init__(self, name: str) -> None:
        self._lock = threading.Lock()
        self._requests: list[R] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(SHUTDOWN_POLL_S,), name=name, daemon=True
        )

    @property
    def origin(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[R]:
        """Every request so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _record(self, request: R) -> None:
        """Under ``self._lock``."""
        self._requests.append(request)

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = standin.protocol_version

            def do_POST(self) -> None:
                # the client may die while we hold or answer its request
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    standin._serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean; the recorded requests are the log

        return Handler


@dataclass(frozen=True, slots=True)
class Fault:
    status: int
    retry_after_s: float | None = None
    rate_limited: bool = False  # a rate-limit answer, whatever its status (Linear's are HTTP 400)
    global_limit: bool = False  # Discord: the app's global limit, which blocks every webhook
    body: Any = None  # answered instead of the stand-in's usual body for the status


@dataclass
class _Hold:
    operation: str | None  # None: whatever comes next
    after_apply: bool
    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)


class ProgrammableStandIn(StandIn[R]):
    """A stand-in a test programs: ``fail(status, n)`` and ``rate_limit(n, s)`` queue faults for the next
    n requests (a stand-in may add keywords to ``rate_limit``); a hold parks the next request (after
    applying it, or before) until ``release()``."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._faults: deque[Fault] = deque()
        self._hold: _Hold | None = None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
        super().__exit__(exc_type, exc, tb)

    def fail(self, status: int, count: int) -> None:
        self._queue(Fault(status), count)

    def rate_limit(self, count: int, retry_after_s: float) -> None:
        self._queue(Fault(429, retry_after_s, rate_limited=True), count)

    def _queue(self, fault: Fault, count: int) -> None:
        with self._lock:
            self._faults.extend(fault for _ in range(count))

    def release(self) -> None:
        with self._lock:
            hold, self._hold = self._hold, None
        if hold is not None:
            hold.released.set()

    def _hold_next(self, after_apply: bool, operation: str | None = None) -> threading.Event:
        """Park the next request (of ``operation``); returns an event set once one is parked."""
        with self._lock:
            self._hold = _Hold(operation, after_apply)
            return self._hold.reached

    def _next_fault(self) -> Fault | None:
        """Under ``self._lock``."""
        return self._faults.popleft() if self._faults else None

    def _serve_unless_held(
        self, handler: BaseHTTPRequestHandler, answer: Callable[[], Answer], operation: str = ""
    ) -> None:
        """Send ``answer()`` (applied and recorded under the lock), unless a hold parks the request first.

        A hold for ``operation``, or for no operation in particular, parks it. Parked after it was
        applied, the request is answered once released; parked before, it is never applied nor
        answered: it is lost with its client.
        """
        with self._lock:
            hold = self._hold if self._hold and self._hold.operation in (None, operation) else None
            if hold is not None:
                self._hold = None
            if hold is None or hold.after_apply:
                status, body, headers = answer()
        if hold is not None:
            hold.reached.set()
            hold.released.wait(HOLD_TIMEOUT_S)
            if not hold.after_apply:
                return
        send(handler, status, body, headers)
