"""The console's pages and the checks every request passes, as a Starlette app.

Starlette (with uvicorn) because it is asyncio-native like the rest of clawvisor, small,
maintained, and already what the MCP bridge's stack brings; Jinja2 for its templates,
which escape every value; no front-end build: one hand-written script and stylesheet,
served from the package, which build every element with `textContent` (never HTML).

Every request: its `Host` must be one the console was started for (a DNS-rebinding page
names its own host); every answer carries a strict Content-Security-Policy (scripts and
styles from this origin only, no inline code, no frames), `nosniff`, no referrer and no
caching. Every page but the login needs the session cookie; every request that changes
anything (POST) also needs the session's CSRF token in `X-CSRF-Token` and an `Origin` of
this very console.

With several VMs, Pending and Activity are every VM's (each card names its VM and its
verdict goes to that VM alone); Workloads and Policy show the first VM given, and say
so; Audit reads the trail `--audit-arg` names (on a collector: every VM's).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from .activity import Activity
from .auth import COOKIE, Sessions, csrf_ok, use_link
from .feed import Feed
from .tools import Tools, rules_in_force

HERE = Path(__file__).resolve().parent
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class VerdictForm(msgspec.Struct, forbid_unknown_fields=True):
    """What the page sends for a verdict (the daemon checks it again): `vm` is the VM
    whose card it was ("" for a single, unnamed socket)."""

    request: Annotated[str, msgspec.Meta(max_length=32)]
    digest: Annotated[str, msgspec.Meta(max_length=64)]
    allow: bool
    grant: Literal["once", "30m", "always"] = "once"
    release: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1
    reason: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    vm: Annotated[str, msgspec.Meta(max_length=63)] = ""


class RespondForm(msgspec.Struct, forbid_unknown_fields=True):
    """A response the operator asked for on the workloads page (the daemon checks it)."""

    workload: Annotated[str, msgspec.Meta(pattern=r"^[a-zA-Z0-9-]{1,64}$")]
    response: Literal["freeze", "thaw", "cut-network", "restore-network"]


class ExplainForm(msgspec.Struct, forbid_unknown_fields=True):
    """A request typed on the policy page, to explain."""

    source: Annotated[str, msgspec.Meta(max_length=64)]
    action: Annotated[str, msgspec.Meta(max_length=64)]
    target: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    params: dict[str, Annotated[str, msgspec.Meta(max_length=4096)]] = {}


class DiffForm(msgspec.Struct, forbid_unknown_fields=True):
    """A candidate policy directory to compare with the policy in force."""

    dir: Annotated[str, msgspec.Meta(max_length=4096)]


#: How often an open stream looks at its session again (seconds).
STREAM_CHECK = 3.0
#: Records the audit page shows at most (the latest).
AUDIT_SHOWN = 300


class Console:
    """One console: its feeds, its tools, its sessions, the hosts it answers for."""

    def __init__(
        self,
        feed: Feed,
        activity: Activity,
        tools: Tools,
        links: Path,
        hosts: set[str],
        origins: set[str],
        secure: bool,
    ) -> None:
        self.feed, self.activity, self.tools = feed, activity, tools
        self.links, self.hosts, self.origins = links, hosts, origins
        self.secure = secure
        self.sessions = Sessions()
        self.user = getpass.getuser()
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))

    # --- the checks ---------------------------------------------------------------------

    def refused(self, request: Request) -> Response | None:
        """Why this request is refused before any route sees it, if it is."""
        if request.headers.get("host", "") not in self.hosts:
            return PlainTextResponse("unknown host", status_code=421)
        if request.method != "GET":
            origin = request.headers.get("origin")
            if origin not in self.origins:
                return PlainTextResponse("cross-origin request refused", status_code=403)
            if request.headers.get("sec-fetch-site", "same-origin") != "same-origin":
                return PlainTextResponse("cross-site request refused", status_code=403)
        return None

    def session(self, request: Request) -> Any:
        return self.sessions.get(request.cookies.get(COOKIE))

    # --- the routes ---------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        token = request.query_params.get("t", "")
        ok = await asyncio.to_thread(use_link, self.links, token)
        if not ok:
            return PlainTextResponse(
                "this link was used already, has expired or is not one: "
                "run `clawvisor approver web --link` for a new one",
                status_code=403,
            )
        sid, session = self.sessions.open(self.user)
        # The session's key goes in the fragment (never sent to a server): the page keeps
        # it in localStorage, which is this origin's alone. The cookie is not: a browser
        # sends 127.0.0.1's cookies to every port of 127.0.0.1, so a cookie alone never
        # authorizes anything here.
        out = RedirectResponse(f"/#k={session.csrf}", status_code=303)
        out.set_cookie(COOKIE, sid, httponly=True, samesite="strict", secure=self.secure, path="/")
        return out

    def _page(self, request: Request, page: str, script: str) -> Response:
        session = self.session(request)
        if session is None:
            return PlainTextResponse("log in with a link from `clawvisor approver web --link`",
                                     status_code=401)  # fmt: skip
        named = [vm for vm in self.feed.fleet.names if vm]
        context = {"user": session.user, "page": page, "script": script,
                   "vms": named, "first": self.feed.first}  # fmt: skip
        return self.templates.TemplateResponse(request, f"{page}.html", context)

    async def pending(self, request: Request) -> Response:
        return self._page(request, "pending", "pending.js")

    async def activity_page(self, request: Request) -> Response:
        return self._page(request, "activity", "activity.js")

    async def workloads_page(self, request: Request) -> Response:
        return self._page(request, "workloads", "workloads.js")

    async def policy_page(self, request: Request) -> Response:
        return self._page(request, "policy", "policy.js")

    async def audit_page(self, request: Request) -> Response:
        return self._page(request, "audit", "audit.js")

    def _guard(self, request: Request, changes: bool = False) -> Response | None:
        """Every API and stream request: the session cookie AND the session's key (its
        CSRF token), in `X-CSRF-Token` (a stream, which EventSource cannot give headers:
        in `?k=`). `changes` is said for the reader: reads need the key too."""
        del changes
        session = self.session(request)
        if session is None:
            return JSONResponse({"error": "no session"}, status_code=401)
        key = request.headers.get("x-csrf-token") or request.query_params.get("k")
        if not csrf_ok(session, key):
            return JSONResponse({"error": "missing or wrong CSRF token"}, status_code=403)
        return None

    async def policy(self, request: Request) -> Response:
        if (refused := self._guard(request, changes=False)) is not None:
            return refused
        try:
            source = await self.feed.call("policy-source", vm=self.feed.first)
            status = await self.feed.call("status", vm=self.feed.first)
        except ConnectionError:
            return _unreachable()
        if source.status != "ok" or not isinstance(source.result, dict):
            return JSONResponse({"error": "policy-source refused"}, status_code=502)
        workloads = status.result.get("workloads", []) if isinstance(status.result, dict) else []
        rules = rules_in_force(source.result.get("files", []))
        return JSONResponse({"rules": rules, "workloads": workloads})

    async def explain(self, request: Request) -> Response:
        if (refused := self._guard(request, changes=True)) is not None:
            return refused
        try:
            form = msgspec.json.decode(await request.body(), type=ExplainForm)
            code, output = await self.tools.explain(
                form.source, form.action, form.target, form.params
            )
        except (msgspec.ValidationError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"exit": code, "output": output})

    async def diff(self, request: Request) -> Response:
        if (refused := self._guard(request, changes=True)) is not None:
            return refused
        try:
            form = msgspec.json.decode(await request.body(), type=DiffForm)
            code, output = await self.tools.diff(form.dir)
        except (msgspec.ValidationError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"exit": code, "output": output})

    async def audit(self, request: Request) -> Response:
        if (refused := self._guard(request, changes=False)) is not None:
            return refused
        q = request.query_params
        try:
            code, output = await self.tools.audit_log(q.get("workload"), q.get("since"))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        records = []
        for line in output.splitlines():
            try:
                rec = msgspec.json.decode(line)
            except msgspec.DecodeError:
                continue
            if not isinstance(rec, dict):
                continue
            if q.get("action") and rec.get("action") != q.get("action"):
                continue
            outcome = rec.get("outcome") or rec.get("decision")
            if q.get("outcome") and outcome != q.get("outcome"):
                continue
            records.append(rec)
        if code != 0 and not records:
            return JSONResponse({"error": output.strip()[-500:] or f"exit {code}"}, status_code=502)
        shown = records[-AUDIT_SHOWN:]
        return JSONResponse({"total": len(records), "records": [_row(r) for r in shown]})

    def _stream(self, request: Request, source: Feed | Activity) -> Response:
        if (refused := self._guard(request)) is not None:
            return refused
        sid = request.cookies.get(COOKIE)
        queue = source.watch()

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield b"data: " + source.snapshot() + b"\n\n"
                # The session is looked at again before every message and every few
                # seconds: a logout or an expiry ends an open stream too.
                while self.sessions.get(sid) is not None:
                    try:
                        data = await asyncio.wait_for(queue.get(), timeout=STREAM_CHECK)
                    except TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                    if self.sessions.get(sid) is None:
                        break
                    yield b"data: " + data + b"\n\n"
            finally:
                source.unwatch(queue)

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def events(self, request: Request) -> Response:
        return self._stream(request, self.feed)

    async def activity_events(self, request: Request) -> Response:
        return self._stream(request, self.activity)

    async def workloads(self, request: Request) -> Response:
        if (refused := self._guard(request)) is not None:
            return refused
        try:
            reply = await self.feed.call("status", vm=self.feed.first)
        except ConnectionError:
            return _unreachable()
        if reply.status != "ok" or not isinstance(reply.result, dict):
            return JSONResponse({"error": "status refused"}, status_code=502)
        r = reply.result
        return JSONResponse({"workloads": r.get("workloads", []), "verify": r.get("verify"),
                             "monitors": r.get("monitors", [])})  # fmt: skip

    async def respond(self, request: Request) -> Response:
        if (refused := self._guard(request, changes=True)) is not None:
            return refused
        try:
            form = msgspec.json.decode(await request.body(), type=RespondForm)
        except msgspec.ValidationError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        try:
            reply = await self.feed.call(
                "respond", vm=self.feed.first, response=form.response, workload=form.workload
            )
        except ConnectionError:
            return _unreachable()
        if reply.status != "ok" or not isinstance(reply.result, dict):
            message = reply.error.message if reply.error else "refused"
            return JSONResponse({"error": message}, status_code=409)
        return JSONResponse({"ok": True, "result": reply.result.get("result", "")})

    async def verdict(self, request: Request) -> Response:
        if (refused := self._guard(request, changes=True)) is not None:
            return refused
        try:
            form = msgspec.json.decode(await request.body(), type=VerdictForm)
        except msgspec.ValidationError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        if form.vm not in self.feed.fleet.sockets:
            return JSONResponse({"error": "no such VM"}, status_code=404)
        fields: dict[str, Any] = {
            "request": form.request,
            "digest": form.digest,
            "allow": form.allow,
            "agent": "web",
            "grant": form.grant if form.allow else "once",
            "release": form.release,
        }
        if form.reason:
            fields["reason"] = form.reason
        try:
            reply = await self.feed.call("verdict", vm=form.vm, **fields)
        except ConnectionError:
            return _unreachable()
        if reply.status != "ok":
            message = reply.error.message if reply.error else "refused"
            return JSONResponse({"error": message}, status_code=409)
        return JSONResponse({"ok": True, "result": reply.result})

    async def logout(self, request: Request) -> Response:
        if self._guard(request, changes=True) is not None:
            return JSONResponse({"error": "no session or CSRF token"}, status_code=403)
        self.sessions.close(request.cookies.get(COOKIE))
        out = JSONResponse({"ok": True})
        out.delete_cookie(COOKIE, path="/")
        return out

    async def audit_verify(self, request: Request) -> Response:
        if (refused := self._guard(request, changes=False)) is not None:
            return refused
        try:
            chains = await self.tools.audit_chains()
        except LookupError as exc:
            return JSONResponse({"error": str(exc)}, status_code=502)
        return JSONResponse({"chains": chains})


def _unreachable() -> Response:
    return JSONResponse({"error": "not connected to clawvisor"}, status_code=503)


def _row(rec: dict[str, Any]) -> dict[str, Any]:
    """One audit record as the page lists it (and in full, on a click)."""
    import datetime as dt

    try:
        when = dt.datetime.fromtimestamp(float(rec.get("ts") or 0), dt.UTC).isoformat(
            timespec="seconds"
        )
    except (TypeError, ValueError):
        when = "?"
    return {
        "when": when,
        "kind": rec.get("kind"),
        "workload": rec.get("workload"),
        "action": rec.get("action"),
        "outcome": rec.get("outcome") or rec.get("decision"),
        "message": rec.get("message"),
        "fields": rec,
    }


def build(console: Console) -> Starlette:
    """The ASGI app: the routes behind the checks, every answer with the headers."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        console.feed.start()
        console.activity.start()
        try:
            yield
        finally:
            await console.activity.stop()
            await console.feed.stop()

    async def checks(request: Request, call_next: RequestResponseEndpoint) -> Response:
        out = console.refused(request) or await call_next(request)
        out.headers.update(HEADERS)
        return out

    return Starlette(
        middleware=[Middleware(BaseHTTPMiddleware, dispatch=checks)],
        routes=[
            Route("/login", console.login),
            Route("/", console.pending),
            Route("/events", console.events),
            Route("/activity", console.activity_page),
            Route("/activity/events", console.activity_events),
            Route("/workloads", console.workloads_page),
            Route("/api/workloads", console.workloads),
            Route("/respond", console.respond, methods=["POST"]),
            Route("/policy", console.policy_page),
            Route("/api/policy", console.policy),
            Route("/api/explain", console.explain, methods=["POST"]),
            Route("/api/diff", console.diff, methods=["POST"]),
            Route("/audit", console.audit_page),
            Route("/api/audit", console.audit),
            Route("/api/audit/verify", console.audit_verify),
            Route("/verdict", console.verdict, methods=["POST"]),
            Route("/logout", console.logout, methods=["POST"]),
            Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
        ],
        lifespan=lifespan,
    )
