"""Talk to clawvisor from a gateway: a synchronous and an asyncio client.

Both pipeline: send as many requests as you like, replies are matched by id whatever
order they come back in. Results come back typed (the action's `Result` Struct); every
error code is its own exception class, so a gateway can tell "the owner said no" from
"fix your params" from "the daemon went away". This module imports the standard
library, msgspec and the protocol's Structs only (no bcc, nftables or systemd), so a
gateway can use it from any venv.

    with Client() as c:
        result = c.request("open-url", url="https://example.com", target="work")

    async with await AsyncClient.connect() as c:
        results = await asyncio.gather(*(c.request("status") for _ in range(100)))
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import os
import select
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final, Literal

import msgspec

from .calls import (
    CONNECT_FIRST_PAUSE,
    CONNECT_MAX_PAUSE,
    IntentLike,
    cancel_line,
    cancel_state,
    connect_unix,
    encode_request,
    own_socket,
    result_of,
)
from .common import MAX_LINE, Reply
from .errors import (
    ClientTimeout,
    ConnectionLost,
    error_for,
)
from .intents import IntentReply, Result

DEFAULT_INTENTS_SOCKET: Final = "/run/clawvisor/intents.sock"
DEFAULT_CONTROL_SOCKET: Final = "/run/clawvisor/control.sock"
#: Longest reply line accepted (results such as `capabilities` may exceed a request's cap).
MAX_REPLY: Final = 16 * MAX_LINE

_reply_decoder: Final = msgspec.json.Decoder(Reply)
_typed_decoder: Final = msgspec.json.Decoder(IntentReply)
_encoder: Final = msgspec.json.Encoder()


class _IdOnly(msgspec.Struct):
    id: str | None = None
    #: Set on lines pushed to a subscription (control socket), which are not replies.
    event: str | None = None


class _Default(enum.Enum):
    TIMEOUT = enum.auto()


#: "Use the client's own timeout" (None means wait for ever).
DEFAULT: Final = _Default.TIMEOUT
Timeout = float | None | Literal[_Default.TIMEOUT]


_id_decoder: Final = msgspec.json.Decoder(_IdOnly)
_watch_encoder: Final = msgspec.json.Encoder()


class _Ids:
    def __init__(self, prefix: str) -> None:
        self._prefix = f"{prefix}{os.getpid()}-{id(self):x}-"
        self._n = itertools.count(1)

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._n)}"


# --- synchronous ---------------------------------------------------------------------


class Client:
    """One connection to a clawvisor socket (blocking, one thread at a time).

    `timeout` bounds each wait for the daemon (connecting, sending, each reply); None
    waits for ever. An `ask` can take as long as the rule's approval timeout.
    """

    def __init__(
        self, path: str | os.PathLike[str] = DEFAULT_INTENTS_SOCKET, timeout: float | None = 30.0
    ) -> None:
        self.path = str(path)
        self.timeout = timeout
        self._sock = connect_unix(self.path, timeout)
        self._sock.setblocking(False)
        self._buf = bytearray()
        self._lines: deque[bytes] = deque()
        self._events: deque[bytes] = deque()
        self._early: dict[str | None, bytes] = {}
        self._outstanding: set[str] = set()
        self._lost: ConnectionLost | None = None
        self.next_id = _Ids("c")

    # -- bytes in and out

    def _deadline(self, timeout: float | None) -> float | None:
        return None if timeout is None else time.monotonic() + timeout

    def _remaining(self, deadline: float | None) -> float | None:
        if deadline is None:
            return None
        left = deadline - time.monotonic()
        if left <= 0:
            raise ClientTimeout(f"no reply from {self.path} in time")
        return left

    def _lose(self, why: str) -> ConnectionLost:
        unanswered = len(self._outstanding - self._early.keys())
        self._lost = ConnectionLost(
            f"clawvisor at {self.path} {why}"
            + (f"; {unanswered} request(s) got no reply" if unanswered else ""),
            unanswered,
        )
        return self._lost

    def _fill(self) -> None:
        """Receive what is there (at least one byte, or the end) and split off lines."""
        try:
            chunk = self._sock.recv(262144)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            raise self._lose(f"broke the connection ({exc.strerror or exc})") from None
        if not chunk:
            raise self._lose("closed the connection")
        self._buf += chunk
        while (end := self._buf.find(b"\n")) >= 0:
            self._lines.append(bytes(self._buf[:end]))
            del self._buf[: end + 1]
        if len(self._buf) > MAX_REPLY:
            raise self._lose(f"sent a line longer than {MAX_REPLY} bytes")

    def _wait(self, want_write: bool, deadline: float | None) -> bool:
        """Block until readable (False) or, if asked, writable (True)."""
        # poll, not select: a gateway may well hold descriptors above FD_SETSIZE.
        poller = select.poll()
        poller.register(self._sock, select.POLLIN | (select.POLLOUT if want_write else 0))
        left = self._remaining(deadline)
        events = poller.poll(None if left is None else max(1, int(left * 1000)))
        if not events:
            self._remaining(deadline)  # raises when the deadline passed
            return False
        mask = events[0][1]
        if mask & (select.POLLIN | select.POLLHUP | select.POLLERR):
            self._fill()
        return bool(mask & select.POLLOUT)

    def send_line(self, payload: bytes) -> None:
        """Send one raw line (a newline is added)."""
        self._send(payload + b"\n")

    def _send(self, data: bytes) -> None:
        # Read while writing: a daemon that cannot send replies stops reading requests,
        # so a client that only writes would deadlock with it.
        if self._lost is not None:
            raise self._lost
        view = memoryview(data)
        deadline = self._deadline(self.timeout)
        while view:
            if not self._wait(True, deadline):
                continue
            try:
                sent = self._sock.send(view)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                raise self._lose(f"broke the connection ({exc.strerror or exc})") from None
            view = view[sent:]

    def read_line(self, timeout: Timeout = DEFAULT) -> bytes:
        """The next line that answers no request (a subscription's pushed events), undecoded."""
        deadline = self._deadline(self.timeout if timeout is DEFAULT else timeout)
        while not self._events:
            if self._lines:
                self._sort(self._lines.popleft())
            else:
                if self._lost is not None:
                    raise self._lost
                self._wait(False, deadline)
        return self._events.popleft()

    def _sort(self, line: bytes) -> str | None:
        """File one received line as a reply by id, or as an event; returns the id."""
        try:
            probe = _id_decoder.decode(line)
        except msgspec.DecodeError:
            raise self._lose("sent a line that is not JSON") from None
        if probe.event is not None:
            self._events.append(line)
            return ""
        self._early[probe.id] = line
        return probe.id

    # -- requests

    def send_intent(self, intent: IntentLike, request_id: str | None = None, **params: Any) -> str:
        """Send an intent without waiting for its reply; returns its id."""
        rid = request_id or self.next_id()
        self._send(encode_request(rid, intent, params))
        self._outstanding.add(rid)
        return rid

    submit = send_intent

    def send_control(self, op: str, request_id: str | None = None, **fields: Any) -> str:
        """Send a control-socket command without waiting; returns its id."""
        rid = request_id or self.next_id()
        self._send(_encoder.encode({"id": rid, "op": op, **fields}) + b"\n")
        self._outstanding.add(rid)
        return rid

    def wait_raw(self, request_id: str, timeout: Timeout = DEFAULT) -> bytes:
        """The raw reply line to `request_id`; replies to other ids are kept for later.

        A reply with a null id (the daemon refusing the connection or a frame) is
        returned at once: it answers whatever was outstanding.
        """
        deadline = self._deadline(self.timeout if timeout is DEFAULT else timeout)
        while True:
            for key in (request_id, None):
                if key in self._early:
                    self._outstanding.discard(request_id)
                    return self._early.pop(key)
            if self._lines:
                self._sort(self._lines.popleft())
            elif self._lost is not None:
                raise self._lost
            else:
                self._wait(False, deadline)

    def wait_for(self, request_id: str) -> tuple[Reply, bytes]:
        """The reply to `request_id` (untyped result) with its raw bytes."""
        raw = self.wait_raw(request_id)
        return _reply_decoder.decode(raw), raw

    def reply(self, request_id: str, timeout: Timeout = DEFAULT) -> IntentReply:
        """The typed reply to `request_id`, error or not."""
        return _typed_decoder.decode(self.wait_raw(request_id, timeout))

    def result(self, request_id: str, timeout: Timeout = DEFAULT) -> Result:
        """The typed result of `request_id`, or its error raised."""
        return result_of(self.reply(request_id, timeout))

    def request(
        self,
        intent: IntentLike,
        /,
        *,
        timeout: Timeout = DEFAULT,
        request_id: str | None = None,
        **params: Any,
    ) -> Result:
        """Send one intent and return its typed result (or raise its error)."""
        return self.result(self.send_intent(intent, request_id, **params), timeout)

    def pipeline(
        self,
        intents: Iterable[IntentLike],
        timeout: Timeout = DEFAULT,
    ) -> list[IntentReply]:
        """Send every intent, then collect every reply, in the order sent."""
        ids = [self.send_intent(i) for i in intents]
        return [self.reply(rid, timeout) for rid in ids]

    def call(self, intent: IntentLike, request_id: str | None = None) -> tuple[Reply, bytes]:
        """Send an intent and wait for its reply (untyped) and the raw line."""
        return self.wait_for(self.send_intent(intent, request_id))

    def control(self, op: str, **fields: Any) -> tuple[Reply, bytes]:
        """Send a control command and wait for its reply."""
        return self.wait_for(self.send_control(op, **fields))

    def cancel(self, request_id: str, timeout: Timeout = DEFAULT) -> str:
        """Withdraw a request in flight: `withdrawn` (it will not run; its own reply says
        `cancelled`), `running` (too late: it runs to completion) or `unknown`."""
        rid = self.next_id()
        self._send(cancel_line(rid, request_id))
        self._outstanding.add(rid)
        return cancel_state(self.reply(rid, timeout))

    def close(self) -> None:
        """Close the connection."""
        self._sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- asyncio -------------------------------------------------------------------------


class AsyncClient:
    """One asyncio connection to the intents socket; concurrent requests share it."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        path: str,
        timeout: float | None,
    ) -> None:
        self.path = path
        self.timeout = timeout
        self._reader = reader
        self._writer = writer
        self._waiting: dict[str, asyncio.Future[bytes]] = {}
        self._lost: ConnectionLost | None = None
        self._send_lock = asyncio.Lock()
        self.next_id = _Ids("a")
        #: Called with each event line's name (`capabilities_changed` after `watch`).
        self.on_event: Callable[[str], None] | None = None
        self._task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(
        cls, path: str | os.PathLike[str] = DEFAULT_INTENTS_SOCKET, timeout: float | None = 30.0
    ) -> AsyncClient:
        """Connect to the socket at `path` (for the shared intents socket, the caller's
        own socket first when it is there)."""
        own = own_socket(str(path))
        if own is not None:
            try:
                return await cls._connect(own, timeout)
            except (FileNotFoundError, ConnectionRefusedError, PermissionError):
                pass
        return await cls._connect(path, timeout)

    @classmethod
    async def _connect(cls, path: str | os.PathLike[str], timeout: float | None) -> AsyncClient:
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = CONNECT_FIRST_PAUSE
        while True:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_unix_connection(str(path), limit=MAX_REPLY),
                    None if deadline is None else max(0.0, deadline - time.monotonic()),
                )
                break
            except BlockingIOError:  # the daemon's listen queue is full: it is busy
                if deadline is not None and time.monotonic() + pause > deadline:
                    raise ClientTimeout(f"{path} stayed too busy to connect to") from None
                await asyncio.sleep(pause)
                pause = min(pause * 2, CONNECT_MAX_PAUSE)
            except TimeoutError:
                raise ClientTimeout(f"cannot connect to {path} within {timeout:g} s") from None
        return cls(reader, writer, str(path), timeout)

    @property
    def lost(self) -> bool:
        """True once the connection is gone; every later request raises ConnectionLost."""
        return self._lost is not None

    async def _read(self) -> None:
        why = "closed the connection"
        try:
            while line := await self._reader.readline():
                if not line.endswith(b"\n"):
                    break
                probe = _id_decoder.decode(line)
                if probe.event is not None:  # pushed, not a reply (after `watch`)
                    if self.on_event is not None:
                        self.on_event(probe.event)
                    continue
                rid = probe.id
                # A null id is a refusal of the whole connection: it answers everyone.
                waiting = list(self._waiting.values()) if rid is None else [self._waiting.get(rid)]
                for future in waiting:
                    if future is not None and not future.done():
                        future.set_result(line)
        except (OSError, ValueError, msgspec.DecodeError) as exc:
            why = f"broke the connection ({exc})"
        finally:
            pending = [f for f in self._waiting.values() if not f.done()]
            self._lost = ConnectionLost(
                f"clawvisor at {self.path} {why}"
                + (f"; {len(pending)} request(s) got no reply" if pending else ""),
                len(pending),
            )
            for future in pending:
                future.set_exception(self._lost)

    async def _exchange(self, line: bytes, rid: str, timeout: float | None) -> bytes:
        if self._lost is not None:
            raise self._lost
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = future
        try:
            async with self._send_lock:
                self._writer.write(line)
                await self._writer.drain()
        except OSError as exc:
            self._waiting.pop(rid, None)
            lost = self._lost or ConnectionLost(f"clawvisor at {self.path} broke ({exc})")
            raise lost from None
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            self._withdraw(rid)
            raise ClientTimeout(f"no reply from {self.path} within {timeout} s") from None
        except asyncio.CancelledError:
            # The caller gave up (an agent runtime's abort): so does the daemon.
            self._withdraw(rid)
            raise
        finally:
            self._waiting.pop(rid, None)

    def _withdraw(self, rid: str) -> None:
        """Tell the daemon, without waiting, that nobody waits for `rid` any more."""
        if self._lost is None and not self._writer.is_closing():
            with contextlib.suppress(OSError, RuntimeError):
                self._writer.write(cancel_line(self.next_id(), rid))

    async def cancel(self, request_id: str, timeout: Timeout = DEFAULT) -> str:
        """Withdraw a request in flight (see `Client.cancel`)."""
        rid = self.next_id()
        wait = self.timeout if timeout is DEFAULT else timeout
        raw = await self._exchange(cancel_line(rid, request_id), rid, wait)
        return cancel_state(_typed_decoder.decode(raw))

    async def watch(self, what: str = "capabilities") -> None:
        """Be told (through `on_event`) when `what` changes, e.g. after a reload."""
        rid = self.next_id()
        line = _watch_encoder.encode({"id": rid, "watch": what}) + b"\n"
        reply = _typed_decoder.decode(await self._exchange(line, rid, self.timeout))
        if reply.status != "ok":
            raise error_for(reply)

    async def reply(
        self,
        intent: IntentLike,
        /,
        *,
        timeout: Timeout = DEFAULT,
        request_id: str | None = None,
        **params: Any,
    ) -> IntentReply:
        """Send one intent and return its typed reply, error or not."""
        rid = request_id or self.next_id()
        line = encode_request(rid, intent, params)
        wait = self.timeout if timeout is DEFAULT else timeout
        return _typed_decoder.decode(await self._exchange(line, rid, wait))

    async def request(
        self,
        intent: IntentLike,
        /,
        *,
        timeout: Timeout = DEFAULT,
        request_id: str | None = None,
        **params: Any,
    ) -> Result:
        """Send one intent and return its typed result (or raise its error)."""
        return result_of(await self.reply(intent, timeout=timeout, request_id=request_id, **params))

    async def close(self) -> None:
        """Close the connection; requests still waiting get ConnectionLost."""
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def socket_path_default(kind: str) -> Path:
    """The default socket path for `intents` or `control`."""
    return Path(DEFAULT_INTENTS_SOCKET if kind == "intents" else DEFAULT_CONTROL_SOCKET)
