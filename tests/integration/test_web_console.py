"""The web console in a real headless Chromium (Debian's, driven by Playwright), against a
real daemon: the console runs as an operator (a member of the operators' group), the asks
come from a workload user over the intents socket. Screenshots go to build/web-console/.

Security checks use plain HTTP requests: no session, no CSRF token, a foreign Origin or
Host, a used link; and values holding markup and bidi controls shown inert.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers import rig
from tests.helpers.chromium import CHROMIUM, FLAGS
from tests.helpers.rig import connect_as, read_lines, request_line
from tests.helpers.rules import rule
from tests.integration.test_approvals import POLICY, RECORDER, settings

playwright = pytest.importorskip("playwright.sync_api")
SHOTS = Path(__file__).resolve().parents[2] / "build" / "web-console"


free_port = rig.free_port


class Web:
    def __init__(self, daemon, alpha, op, root: Path, port: int):
        self.daemon, self.alpha, self.op, self.root, self.port = daemon, alpha, op, root, port
        self.base = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[str] | None = None
        self.first_link = ""

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(rig.CLAWVISOR), "approver", "web", "--socket", str(self.daemon.control),
             "--listen", f"127.0.0.1:{self.port}", "--state-dir", str(self.root / "web"),
             "--config-dir", str(self.daemon.config_dir),
             f"--audit-arg=--log-dir={self.daemon.root / 'log'}"],
            stdout=subprocess.PIPE, text=True, env={"PATH": os.environ["PATH"],
                                                    "HOME": str(self.root)},
            **rig.as_user(self.op),
        )  # fmt: skip
        assert self.proc.stdout is not None
        assert "web console at" in self.proc.stdout.readline()
        line = self.proc.stdout.readline()
        self.first_link = line.split(": ", 1)[1].strip()
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the console did not listen"
                time.sleep(0.1)

    def link(self) -> str:
        out = subprocess.run(
            [str(rig.CLAWVISOR), "approver", "web", "--link", "--listen",
             f"127.0.0.1:{self.port}", "--state-dir", str(self.root / "web")],
            capture_output=True, text=True, timeout=30,
            env={"PATH": os.environ["PATH"], "HOME": str(self.root)}, **rig.as_user(self.op),
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def ask(self, url: str, action: str = "open-url"):
        sock = connect_as(self.daemon.intents, self.alpha)
        rid = f"w-{uuid.uuid4().hex[:8]}"
        intent = {"action": action, "target": "alpha"}
        intent.update({"url": url} if action == "open-url" else {"query": url})
        sock.sendall(request_line(rid, intent))
        return sock

    def http(self, method: str, path: str, headers: dict[str, str] | None = None,
             body: bytes | None = None) -> tuple[int, str, dict[str, str]]:  # fmt: skip
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request(method, path, body=body, headers={"Host": f"127.0.0.1:{self.port}",
                                                        **(headers or {})})  # fmt: skip
        res = conn.getresponse()
        text = res.read().decode("utf-8", "replace")
        out = (res.status, text, {k.lower(): v for k, v in res.getheaders()})
        conn.close()
        return out

    def session(self) -> tuple[str, str]:
        """(cookie, key) of a fresh session, logged in with a new link over plain HTTP: the
        key comes in the redirect's #fragment (the page keeps it in localStorage)."""
        status, _, headers = self.http("GET", self.link().removeprefix(self.base))
        assert status == 303, status
        cookie = headers["set-cookie"].split(";", 1)[0]
        key = re.fullmatch(r"/#k=([A-Za-z0-9_-]+)", headers["location"])
        assert key is not None, headers["location"]
        return cookie, key[1]


@pytest.fixture(scope="module")
def web(make_group, make_user, make_daemon, journal):
    group = make_group()
    # The operator reads the trail as operators do: in the systemd-journal group.
    alpha, op = make_user(), make_user(groups=(group, "systemd-journal"))
    root = rig.shared_tmpdir("clawvisor-web-")
    os.chown(root, op.uid, op.gid)
    (root / "rec").mkdir(mode=0o1777)
    (root / "rec").chmod(0o1777)
    record = root / "rec" / "r.jsonl"
    search = (
        f'[executors.search]\nargv = ["/usr/bin/python3", "{RECORDER}", "{record}", "{{url}}"]\n'
    )
    daemon = make_daemon(
        {"alpha": alpha},
        {"10.toml": POLICY + rule("search", "alpha", "ask", "@self", timeout=60)},
        settings(group, record) + search + "[monitors]\noverlay = false\ncounters = false\n",
    )
    w = Web(daemon, alpha, op, root, free_port())
    w.start()
    yield w
    assert w.proc is not None
    rig.stop_process(w.proc)
    rig.cleanup_root(root)


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


@pytest.fixture()
def page(web, browser):
    context = browser.new_context()
    pg = context.new_page()
    pg.goto(web.link())
    pg.wait_for_selector("#status:text('connected')", timeout=10_000)
    yield pg
    context.close()


def shot(pg, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def card(pg, url: str):
    return pg.locator("#pending li.card", has_text=url)


# --- in the browser -------------------------------------------------------------------------


def test_the_printed_one_time_link_logs_in(web, browser):
    context = browser.new_context()
    pg = context.new_page()
    pg.goto(web.first_link)
    assert pg.url == web.base + "/"
    pg.wait_for_selector("#status:text('connected')", timeout=10_000)
    assert pg.locator("h2").first.inner_text() == "Waiting for you"
    shot(pg, "pending-empty")
    again = browser.new_context().new_page()
    response = again.goto(web.first_link)
    assert response is not None and response.status == 403
    context.close()


def test_a_pending_ask_appears_within_a_second_with_its_params_exactly(web, page):
    url = f"https://web.example/{uuid.uuid4().hex[:6]}?q=a&b=c"
    started = time.monotonic()
    with web.ask(url):
        try:
            card(page, url).wait_for(timeout=5_000)
        except playwright.Error:
            shot(page, "debug")
            raise AssertionError(page.content()) from None
        seen = time.monotonic() - started
        text = card(page, url).locator("pre.body").inner_text()
        assert f"url: {url}" in text.splitlines()
        meta = card(page, url).locator(".deadline").inner_text()
        assert re.search(r"rule policy\.d/10\.toml:\d+ · \d+ s to answer", meta), meta
        shot(page, "pending-ask")
    assert seen < 1.0, seen


def test_allow_runs_it_and_the_gateway_gets_ok(web, page):
    url = f"https://web.example/allow-{uuid.uuid4().hex[:6]}"
    with web.ask(url) as sock:
        card(page, url).locator("button.allow-once").click()
        reply = read_lines(sock, 1)[0]
    assert reply["status"] == "ok", reply
    record = web.root / "rec" / "r.jsonl"
    assert json.loads(record.read_text().splitlines()[-1])["args"] == [url]
    page.locator("#closed li", has_text=url).wait_for(timeout=5_000)
    assert card(page, url).count() == 0


def test_deny_refuses_it_with_the_reason(web, page):
    url = f"https://web.example/deny-{uuid.uuid4().hex[:6]}"
    with web.ask(url) as sock:
        c = card(page, url)
        c.wait_for(timeout=5_000)
        c.locator("input.reason").fill("not today")
        c.locator("button.deny").click()
        reply = read_lines(sock, 1)[0]
    assert reply["status"] == "denied", reply
    assert "not today" in json.dumps(reply)


def test_an_ask_its_gateway_withdraws_disappears(web, page):
    url = f"https://web.example/gone-{uuid.uuid4().hex[:6]}"
    sock = web.ask(url)
    card(page, url).wait_for(timeout=5_000)
    sock.close()  # the gateway went away: the ask is withdrawn
    page.locator("#closed li", has_text="withdrawn").wait_for(timeout=10_000)
    assert card(page, url).count() == 0
    shot(page, "withdrawn")


def test_markup_and_bidi_in_a_param_are_shown_inert(web, page):
    tag = uuid.uuid4().hex[:6]
    query = (
        f"q{tag} <script>document.title='pwned'</script><img src=x onerror=alert(1)> \u202etxt.exe"
    )
    with web.ask(query, action="search"):
        c = card(page, f"q{tag}")
        c.wait_for(timeout=5_000)
        text = c.locator("pre.body").inner_text()
        assert "<script>document.title='pwned'</script>" in text  # as text, not markup
        assert "\u202e" not in text and "\\u202e" in text.lower()  # shown as an escape
        assert page.title() == "clawvisor: pending"
        assert page.locator("#pending script, #pending img").count() == 0
        shot(page, "inert")
        c.locator("button.deny").click()


def test_the_verdict_is_audited_with_the_operators_identity(web, page, journal):
    url = f"https://web.example/audit-{uuid.uuid4().hex[:6]}"
    with web.ask(url) as sock:
        card(page, url).locator("button.allow-once").click()
        read_lines(sock, 1)
    user = subprocess.run(["id", "-un", str(web.op.uid)], capture_output=True,
                          text=True).stdout.strip()  # fmt: skip
    records = journal.wait_entries(1, CLAWVISOR_APPROVER=f"web web:{user}")
    assert records, "no record with the console's operator as approver"


# --- over plain HTTP ------------------------------------------------------------------------


def test_pages_without_a_session_are_refused(web):
    for path in ("/", "/events"):
        assert web.http("GET", path)[0] == 401
    status, _, _ = web.http("POST", "/verdict", {"Origin": web.base}, b"{}")
    assert status == 401


def test_a_verdict_without_the_csrf_token_is_refused(web):
    cookie, _ = web.session()
    body = json.dumps({"request": "p-0123456789", "digest": "0" * 64, "allow": True}).encode()
    status, text, _ = web.http("POST", "/verdict", {"Cookie": cookie, "Origin": web.base}, body)
    assert status == 403 and "CSRF" in text
    status, _, _ = web.http("POST", "/verdict", {"Cookie": cookie, "Origin": web.base,
                                                 "X-CSRF-Token": "wrong"}, body)  # fmt: skip
    assert status == 403


def test_a_foreign_origin_is_refused_even_with_session_and_token(web):
    cookie, csrf = web.session()
    body = json.dumps({"request": "p-0123456789", "digest": "0" * 64, "allow": True}).encode()
    for origin in ("http://evil.example", "null", None):
        headers = {"Cookie": cookie, "X-CSRF-Token": csrf}
        if origin is not None:
            headers["Origin"] = origin
        status, text, _ = web.http("POST", "/verdict", headers, body)
        assert status == 403 and "origin" in text, (origin, status, text)


def test_a_foreign_host_is_refused(web):
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
    conn.request("GET", "/", headers={"Host": "rebind.evil.example"})
    assert conn.getresponse().status == 421
    conn.close()


def test_a_used_link_is_refused(web):
    link = web.link().removeprefix(web.base)
    assert web.http("GET", link)[0] == 303
    assert web.http("GET", link)[0] == 403


def test_every_answer_has_a_strict_csp_and_the_cookie_is_strict(web):
    _, _, headers = web.http("GET", web.link().removeprefix(web.base))
    cookie = headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert "frame-ancestors 'none'" in csp and headers["x-content-type-options"] == "nosniff"
    page = web.http("GET", "/", {"Cookie": headers["set-cookie"].split(";", 1)[0]})[1]
    assert "<script>" not in page and "onclick" not in page  # no inline script at all
    assert headers["location"] not in page  # the page holds no secret


def test_the_cookie_alone_authorizes_nothing(web):
    """Browsers send 127.0.0.1's cookies to every port of it: a server on another port
    gets the cookie, never the key (localStorage is per origin)."""
    cookie, _ = web.session()
    for path in ("/api/workloads", "/api/policy", "/api/audit", "/events", "/activity/events"):
        status, _, _ = web.http("GET", path, {"Cookie": cookie})
        assert status == 403, path
    body = json.dumps({"request": "p-0123456789", "digest": "0" * 64, "allow": True}).encode()
    status, _, _ = web.http("POST", "/verdict", {"Cookie": cookie, "Origin": web.base}, body)
    assert status == 403


def test_logout_ends_an_open_stream(web):
    cookie, key = web.session()
    s = socket.create_connection(("127.0.0.1", web.port), timeout=10)
    s.sendall(f"GET /events?k={key} HTTP/1.1\r\nHost: 127.0.0.1:{web.port}\r\n"
              f"Cookie: {cookie}\r\n\r\n".encode())  # fmt: skip
    assert b"snapshot" in s.recv(65536) or b"snapshot" in s.recv(65536)
    status, _, _ = web.http("POST", "/logout", {"Cookie": cookie, "X-CSRF-Token": key,
                                                 "Origin": web.base})  # fmt: skip
    assert status == 200
    s.settimeout(10)
    ended = b""
    while chunk := s.recv(65536):
        ended += chunk
    assert ended.endswith(b"0\r\n\r\n")  # the stream's last chunk: it ended
    s.close()


def test_one_person_through_the_console_and_the_cli_is_one_vote(web):
    url = f"https://quorum.example/{uuid.uuid4().hex[:6]}"
    with web.ask(url):
        deadline = time.monotonic() + 10
        pending = None
        while pending is None:
            with connect_as(web.daemon.control, web.op) as c:
                c.sendall(b'{"id":"p","op":"pending"}\n')
                listed = read_lines(c, 1)[0]["result"]["pending"]
            pending = next((p for p in listed if p["params"]["url"] == url), None)
            assert time.monotonic() < deadline
        with connect_as(web.daemon.control, web.op) as c:
            c.sendall(json.dumps({"id": "v", "op": "verdict", "request": pending["id"],
                                  "digest": pending["digest"], "allow": True,
                                  "agent": "cli"}).encode() + b"\n")  # fmt: skip
            assert read_lines(c, 1)[0]["status"] == "ok"  # 1 of 2
        cookie, key = web.session()
        body = json.dumps({"request": pending["id"], "digest": pending["digest"],
                           "allow": True}).encode()  # fmt: skip
        status, text, _ = web.http("POST", "/verdict", {"Cookie": cookie, "X-CSRF-Token": key,
                                                         "Origin": web.base}, body)  # fmt: skip
        assert status == 409 and "already approved" in text, text


def test_the_workloads_page_freezes_and_thaws_a_workload(web, page):
    from supervisor.cgroups import WorkloadCgroup

    sleeper = subprocess.Popen(["/bin/sleep", "300"], **rig.as_user(web.alpha))
    try:
        page.goto(web.base + "/workloads")
        row = page.locator("#workloads tr[data-workload='alpha']")
        row.wait_for(timeout=10_000)
        page.on("dialog", lambda d: d.accept())
        row.locator("button.freeze").click()
        page.locator("#result", has_text="alpha:").wait_for(timeout=10_000)
        cg = WorkloadCgroup("alpha")
        deadline = time.monotonic() + 10
        while not cg.frozen():
            assert time.monotonic() < deadline, page.locator("#result").inner_text()
            time.sleep(0.05)
        assert sleeper.pid in cg.members()
        shot(page, "workloads")
        row.locator("button.thaw").click()
        deadline = time.monotonic() + 10
        while cg.frozen():
            assert time.monotonic() < deadline, "thaw did not take"
            time.sleep(0.05)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_response_from_the_console_is_audited_with_the_operators_name(web, journal):
    cookie, csrf = web.session()
    body = json.dumps({"workload": "alpha", "response": "thaw"}).encode()
    status, text, _ = web.http("POST", "/respond", {"Cookie": cookie, "X-CSRF-Token": csrf,
                                                     "Origin": web.base}, body)  # fmt: skip
    assert status == 200, text
    user = subprocess.run(["id", "-un", str(web.op.uid)], capture_output=True,
                          text=True).stdout.strip()  # fmt: skip
    assert journal.wait_entries(1, CLAWVISOR_APPROVER=f"web:{user}")


def test_the_activity_timeline_renders_for_a_workload_that_did_1000_things(web, page):
    page.goto(web.base + "/activity")
    page.wait_for_selector("#status:text('connected')", timeout=10_000)
    loop = "i=0; while [ $i -lt 1000 ]; do /bin/true; i=$((i+1)); done"
    subprocess.run(["/bin/sh", "-c", loop], check=True, timeout=120, **rig.as_user(web.alpha))
    caption = page.locator(".timeline[data-workload='alpha'] figcaption")
    deadline = time.monotonic() + 30
    while True:
        text = caption.inner_text() if caption.count() else ""
        found = re.match(r"alpha: (\d+) in the last hour, (\d+) intents", text)
        if found and int(found[1]) >= 1000:
            break
        assert time.monotonic() < deadline, text
        time.sleep(0.3)
    assert page.locator(".timeline[data-workload='alpha'] rect.bar").count() > 0
    # Its intents are on it too (the asks of the tests before, decided, from the trail).
    url = f"https://web.example/timeline-{uuid.uuid4().hex[:6]}"
    with web.ask(url) as sock:
        decided = subprocess.run(
            [str(rig.CLAWVISOR), "pending", "--socket", str(web.daemon.control)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert url in decided.stdout
        sock.close()
    page.locator(".timeline[data-workload='alpha'] rect.bar.intent").first.wait_for(
        state="attached", timeout=10_000
    )
    page.locator("#events li[data-kind='intent']").first.wait_for(timeout=10_000)
    assert page.locator("#events li[data-workload='alpha'][data-kind='exec']").count() > 0
    page.locator("#kind").fill("exec")
    kinds = set(page.locator("#events li").evaluate_all("els => els.map(e => e.dataset.kind)"))
    assert kinds == {"exec"}
    shot(page, "activity")


def test_the_policy_page_lists_the_rules_in_force_with_file_and_line(web, page):
    page.goto(web.base + "/policy")
    rows = page.locator("#rules tbody tr")
    rows.first.wait_for(timeout=10_000)
    wheres = rows.evaluate_all("rs => rs.map(r => r.dataset.where)")
    assert wheres == sorted(wheres, key=lambda w: int(w.rsplit(":", 1)[1]))  # evaluation order
    assert all(re.fullmatch(r"policy\.d/10\.toml:\d+", w) for w in wheres), wheres
    assert rows.filter(has_text="search").count() == 1
    shot(page, "policy")


def test_explain_shows_the_deciding_rule_for_a_typed_request(web, page):
    page.goto(web.base + "/policy")
    form = page.locator("#explain")
    form.locator("[name=source]").fill("alpha")
    form.locator("[name=action]").fill("open-url")
    form.locator("[name=target]").fill("alpha")
    form.locator("[name=params]").fill("url=https://quorum.example/x")
    form.locator("button").click()
    out = page.locator("#explained")
    out.filter(has_text="decision").wait_for(timeout=20_000)
    assert re.search(r"decision: ask \(rule policy\.d/10\.toml:\d+\)", out.inner_text())


def test_diff_of_a_candidate_policy_shows_what_it_newly_allows(web, page):
    candidate = web.root / "candidate"
    candidate.mkdir(exist_ok=True)
    (candidate / "10.toml").write_text(rule("open-url", "alpha", "allow", "@self") + rule("status"))
    page.goto(web.base + "/policy")
    page.locator("#diff [name=dir]").fill(str(candidate))
    page.locator("#diff button").click()
    page.locator("#diffed").filter(has_text="open-url").wait_for(timeout=30_000)
    text = page.locator("#diffed").inner_text()
    assert "open-url" in text and "allow" in text, text


def test_the_audit_page_finds_records_and_shows_the_chain_intact(web, page):
    url = f"https://web.example/trail-{uuid.uuid4().hex[:6]}"
    with web.ask(url) as sock:
        card(page, url).locator("button.allow-once").click()
        read_lines(sock, 1)
    page.goto(web.base + "/audit")
    chain = page.locator("#chains .chain").first
    chain.wait_for(timeout=20_000)
    assert "intact" in chain.inner_text() and "chain intact" in chain.get_attribute("class")
    form = page.locator("#search")
    form.locator("[name=action]").fill("open-url")
    form.locator("[name=outcome]").fill("ok")
    form.locator("button").click()
    page.locator("#records[data-query*='outcome=ok']").wait_for(timeout=20_000)
    record = page.locator("#records li", has_text="open-url").last
    record.wait_for(timeout=20_000)
    assert set(
        page.locator("#records li").evaluate_all("ls => ls.map(l => l.dataset.outcome)")
    ) == {"ok"}
    record.click()
    full = record.locator("pre.full")
    assert full.is_visible() and '"seq"' in full.inner_text()
    shot(page, "audit")


def test_a_tool_request_without_the_csrf_token_is_refused(web):
    cookie, _ = web.session()
    for path in ("/api/explain", "/api/diff"):
        status, _, _ = web.http("POST", path, {"Cookie": cookie, "Origin": web.base}, b"{}")
        assert status == 403, path


def test_a_diff_path_cannot_smuggle_an_option(web):
    cookie, csrf = web.session()
    body = json.dumps({"dir": "--config-dir=/"}).encode()
    status, text, _ = web.http("POST", "/api/diff", {"Cookie": cookie, "X-CSRF-Token": csrf,
                                                     "Origin": web.base}, body)  # fmt: skip
    assert status == 400 and "absolute" in text
