"""`clawvisor mcp`: an MCP server over stdio that turns tool calls into intents.

Runs as the workload user, so the daemon knows the caller from SO_PEERCRED as with any
gateway. The tools are the actions the workload's policy could allow or ask about,
asked of the daemon (`capabilities`) each time the client lists them, and announced as
changed (`notifications/tools/list_changed`) when the daemon says a reload happened; a
call is one intent, decided by the daemon as always, with progress notifications while
it waits for a human. Refusals come back as tool errors that say
what happened and that retrying will not help: the decision is never hidden.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import Any

import mcp_types as types
import msgspec
from mcp.server import NotificationOptions, Server, ServerRequestContext
from mcp.server.stdio import stdio_server

from executors.capabilities import Capability
from executors.capabilities import Result as CapabilitiesResult

from ..state import daemon_version
from ..wire.calls import result_of
from ..wire.client import AsyncClient
from ..wire.errors import ClawvisorError, ClientTimeout, ConnectionLost
from ..wire.intents import IntentReply
from .describe import ADVICE, offered

#: Extra seconds over a rule's approval timeout before the bridge stops waiting itself.
MARGIN = 30.0
#: While a call waits (an ask: a human deciding), progress every this many seconds.
PROGRESS_EVERY = 5.0


class Bridge:
    """The MCP handlers and their one connection to the intents socket."""

    def __init__(
        self, socket: str, timeout: float | None, progress_every: float = PROGRESS_EVERY
    ) -> None:
        self.socket = socket
        self.timeout = timeout
        self.progress_every = progress_every
        self._client: AsyncClient | None = None
        self._caps: dict[str, Capability] = {}
        #: The MCP session (learnt from the first request), to push list changes to.
        self._session: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: How many `notifications/tools/list_changed` were sent (after reloads).
        self.list_changes = 0

    async def _connection(self) -> AsyncClient:
        if self._client is None or self._client.lost:
            self._client = await AsyncClient.connect(self.socket, timeout=self.timeout)
            # The daemon pushes a line after each reload: the tool list may differ now.
            self._client.on_event = self._event
            await self._client.watch("capabilities")
        return self._client

    def _event(self, name: str) -> None:
        if name == "capabilities_changed" and self._session is not None:
            task = asyncio.get_running_loop().create_task(self._list_changed())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _list_changed(self) -> None:
        with contextlib.suppress(Exception):  # a client gone is not the bridge's error
            await self._session.send_tool_list_changed()
            self.list_changes += 1

    async def capabilities(self) -> list[Capability]:
        """The workload's capabilities, asked of the daemon now."""
        client = await self._connection()
        result = result_of(await client.reply("capabilities"))
        assert isinstance(result, CapabilitiesResult)
        self._caps = {c.action: c for c in result.actions}
        return offered(result.actions)

    async def list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        """Each action the policy could allow or ask about, as a tool."""
        self._session = ctx.session
        tools = [
            types.Tool(
                name=cap.action,
                title=cap.action,
                description=cap.description,
                input_schema=cap.params,
                annotations=types.ToolAnnotations(
                    read_only_hint=not cap.mutating, destructive_hint=cap.mutating
                ),
            )
            for cap in await self.capabilities()
        ]
        return types.ListToolsResult(tools=tools)

    def _wait_for(self, action: str) -> float | None:
        if self.timeout is None:
            return None
        cap = self._caps.get(action)
        asks = [r.timeout for r in cap.rules if r.timeout is not None] if cap else []
        return max([self.timeout, *(t + MARGIN for t in asks)])

    async def call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        """One tool call is one intent; the reply comes back whole, decision included."""
        self._session = ctx.session
        intent = {**(params.arguments or {}), "action": params.name}
        token = (ctx.meta or {}).get("progress_token")
        progress = None
        if token is not None:
            progress = asyncio.get_running_loop().create_task(
                _progress(ctx.session, token, ctx.request_id, self.progress_every)
            )
        try:
            client = await self._connection()
            reply = await client.reply(intent, timeout=self._wait_for(params.name))
        except ClientTimeout as exc:
            return _failure(
                f"clawvisor did not answer within the bridge's timeout ({exc}). The request "
                "may still be waiting for a human; do not send it again.",
            )
        except (ConnectionLost, OSError) as exc:
            return _failure(
                f"The connection to clawvisor was lost ({exc}). Whether the action ran is "
                "unknown: check before trying again.",
            )
        finally:
            if progress is not None:
                progress.cancel()
        return _tool_result(reply)


async def _progress(session: Any, token: str | int, request_id: Any, every: float) -> None:
    """Progress notifications while a call waits, so that a client (and its user) sees it
    is being decided, not stuck: a human may have been asked."""
    waited = 0.0
    with contextlib.suppress(Exception):
        while True:
            await asyncio.sleep(every)
            waited += every
            await session.send_progress_notification(
                token,
                waited,
                None,
                f"clawvisor is deciding (a human may have been asked); waited {waited:g} s",
                related_request_id=None if request_id is None else str(request_id),
            )


def _failure(text: str, structured: Any = None) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(text=text)], structured_content=structured, is_error=True
    )


def _tool_result(reply: IntentReply) -> types.CallToolResult:
    plain = msgspec.to_builtins(reply)
    if reply.status == "ok" and reply.result is not None:
        body = msgspec.to_builtins(reply.result)
        return types.CallToolResult(
            content=[types.TextContent(text=json.dumps(body, ensure_ascii=False))],
            structured_content=body,
        )
    try:
        result_of(reply)
    except ClawvisorError as exc:
        error = exc
    code = error.code or "error"
    decided = (
        f"clawvisor refused this call: {reply.decision} by rule {reply.rule}"
        if reply.decision
        else "clawvisor could not carry out this call"
    )
    text = f"{decided} ({code}): {error.message}. {ADVICE.get(code, '')}".strip()
    if error.info is not None and error.info.stderr:
        text += f"\nstderr: {error.info.stderr}"
    return _failure(text, plain)


def build_server(bridge: Bridge) -> Server[Any]:
    """The MCP server with the bridge's handlers."""
    return Server(
        "clawvisor",
        version=daemon_version(),
        instructions="Actions on this machine go through clawvisor, which checks each one "
        "against the owner's policy and may ask a human first. A refused call stays refused.",
        on_list_tools=bridge.list_tools,
        on_call_tool=bridge.call_tool,
    )


async def _serve(bridge: Bridge) -> None:
    server = build_server(bridge)
    async with stdio_server() as (read_stream, write_stream):
        options = server.create_initialization_options(NotificationOptions(tools_changed=True))
        await server.run(read_stream, write_stream, options)


def unreachable_hint(socket: str, exc: BaseException) -> str:
    """One line that says why the socket could not be used and what to fix."""
    if isinstance(exc, FileNotFoundError):
        fix = (
            "no socket there: is clawvisor installed and its socket up "
            "(`systemctl status clawvisor-intents.socket`), or is --socket wrong?"
        )
    elif isinstance(exc, PermissionError):
        fix = "permission denied: this user is not in the gateway group of a provisioned workload"
    elif isinstance(exc, ConnectionRefusedError):
        fix = "nothing listening: start clawvisor (`systemctl start clawvisor-intents.socket`)"
    else:
        fix = "the daemon did not answer: see `journalctl -u clawvisor`"
    return f"cannot reach clawvisor at {socket} ({exc}): {fix}"


def serve(socket: str, timeout: float | None, progress_every: float = PROGRESS_EVERY) -> int:
    """Serve MCP on stdin/stdout until the client goes away."""
    bridge = Bridge(socket, timeout, progress_every)

    async def main() -> None:
        # Fail loudly before serving when the daemon is not there or refuses this user.
        await bridge.capabilities()
        await _serve(bridge)

    try:
        asyncio.run(main())
    except (OSError, ConnectionLost, ClientTimeout) as exc:
        print(f"clawvisor mcp: {unreachable_hint(socket, exc)}", file=sys.stderr)
        return 2
    except ClawvisorError as exc:
        print(
            f"clawvisor mcp: clawvisor refused to list this workload's actions: {exc}; "
            "is this user a provisioned workload's gateway (workloads.toml)?",
            file=sys.stderr,
        )
        return 2
    return 0
