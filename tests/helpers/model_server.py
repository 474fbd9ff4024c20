"""A scripted OpenAI-compatible model (chat completions, streamed) on 127.0.0.1, so that a
real OpenClaw agent runs real turns whose tool calls the test chooses.

A turn's script is picked by a key the test puts in its message (`[scenario NAME]`); the
step within it is the number of assistant messages since that user message, so retries
and several agents at once each get the right step. Every request is kept, so a test
reads what tools the agent was offered and what each tool call returned.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

#: OpenClaw appends a user message of its own after every tool result; not the user's.
INTERNAL = "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>"
KEY = re.compile(r"\[scenario ([\w.-]+)\]")


def tool_call(name: str, **arguments: Any) -> dict[str, Any]:
    """A step that calls one tool."""
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


def say(text: str) -> dict[str, Any]:
    """A step that ends the turn with `text`."""
    return {"text": text}


#: Between tool results in an `echo_results()` reply.
SEPARATOR = "\n@@@@\n"


def echo_results() -> dict[str, Any]:
    """A step that ends the turn by repeating every tool result, so a test reads them in the
    agent's reply: "RESULTS: " and the results joined by SEPARATOR."""
    return {"echo": True}


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


@dataclass
class Seen:
    """One chat request as the model saw it."""

    scenario: str
    step: int
    tools: dict[str, str]
    messages: list[dict[str, Any]]
    #: time.monotonic() when the request came in, and when its reply was all sent.
    at: float = 0.0
    done: float = 0.0

    def tool_results(self) -> list[str]:
        """The text of every tool result in the conversation so far."""
        return [_text(m) for m in self.messages if m.get("role") == "tool"]


@dataclass
class ScriptedModel:
    """The model: scenario name -> steps. Unknown scenarios and steps past the end say so."""

    scenarios: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Where each request's scenario, step and tools are written too (a JSON line each).
    log: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def requests(self, scenario: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.scenario == scenario]

    def pick(self, body: dict[str, Any]) -> tuple[dict[str, Any], Seen]:
        messages: list[dict[str, Any]] = body.get("messages") or []
        last_user = max(
            (
                i
                for i, m in enumerate(messages)
                if m.get("role") == "user" and not _text(m).lstrip().startswith(INTERNAL)
            ),
            default=-1,
        )
        found = KEY.search(_text(messages[last_user])) if last_user >= 0 else None
        scenario = found.group(1) if found else "?"
        step = sum(1 for m in messages[last_user + 1 :] if m.get("role") == "assistant")
        tools = {
            t["function"]["name"]: t["function"].get("description", "")
            for t in body.get("tools") or []
            if isinstance(t, dict) and "function" in t
        }
        seen = Seen(scenario, step, tools, messages, at=time.monotonic())
        with self.lock:
            self.seen.append(seen)
        if self.log is not None:
            with self.lock, self.log.open("a") as f:
                f.write(json.dumps({"scenario": scenario, "step": step, "tools": tools}) + "\n")
        steps = self.scenarios.get(scenario, [])
        if step >= len(steps):
            return say(f"(scripted model: no step {step} in scenario {scenario})"), seen
        if steps[step].get("echo"):
            texts = [_text(m) for m in messages if m.get("role") == "tool"]
            return say("RESULTS: " + SEPARATOR.join(texts)), seen
        return steps[step], seen


def _handler(model: ScriptedModel) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self.send_error(404)
                return
            body = json.loads(raw or b"{}")
            step, seen = model.pick(body)
            if step.get("delay"):
                time.sleep(float(step["delay"]))
            self.stream(body.get("model", "scripted"), step)
            seen.done = time.monotonic()

        def stream(self, name: str, step: dict[str, Any]) -> None:
            cid = f"chatcmpl-{time.monotonic_ns()}"
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True

            def chunk(
                delta: dict[str, Any] | None, finish: str | None = None, **extra: Any
            ) -> None:
                choices = (
                    [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
                )
                obj = {"id": cid, "object": "chat.completion.chunk", "created": 0,
                       "model": name, "choices": choices, **extra}  # fmt: skip
                self.wfile.write(b"data: " + json.dumps(obj).encode() + b"\n\n")

            chunk({"role": "assistant", "content": ""})
            if step.get("text"):
                chunk({"content": step["text"]})
            calls = step.get("tool_calls") or []
            for i, call in enumerate(calls):
                head = {"index": i, "id": f"call{cid[-8:]}{i}", "type": "function",
                        "function": {"name": call["name"], "arguments": ""}}  # fmt: skip
                chunk({"tool_calls": [head]})
                args = {"index": i, "function": {"arguments": json.dumps(call["arguments"])}}
                chunk({"tool_calls": [args]})
            chunk({}, "tool_calls" if calls else "stop")
            usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
            chunk(None, usage=usage)
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()

    return Handler


@contextmanager
def serving(model: ScriptedModel, port: int = 0) -> Iterator[ScriptedModel]:
    """Serve `model` on loopback (a free port unless given) for the duration."""
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(model))
    server.daemon_threads = True
    model.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield model
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def main() -> None:
    """Serve from the command line (where a test cannot run it in-process, e.g. inside a
    booted container): --port P --scenarios FILE (JSON: name -> steps) --log FILE."""
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--scenarios", type=Path, required=True)
    p.add_argument("--log", type=Path, required=True)
    args = p.parse_args()
    model = ScriptedModel(json.loads(args.scenarios.read_text()), log=args.log)
    with serving(model, args.port):
        threading.Event().wait()


if __name__ == "__main__":
    main()
