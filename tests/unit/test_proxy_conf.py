"""The egress proxy's configuration, rendered from data: what each workload may reach."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from supervisor.config import WorkloadSpec
from supervisor.monitors import events as ev
from supervisor.proxy.accesslog import BadLine, parse
from supervisor.proxy.allowlist import Allowed, current, parse_domain, static_allows
from supervisor.proxy.control import accepting_again
from supervisor.proxy.ports import assign
from supervisor.proxy.squid_conf import LOGFORMAT, ProxyLayout, minimal, render

LAYOUT = ProxyLayout(Path("/p"))


def conf(allows: dict[str, list[tuple[str, int]]], ports: dict[str, int] | None = None) -> str:
    ports = ports if ports is not None else {n: 3130 + i for i, n in enumerate(sorted(allows))}
    return render(LAYOUT, ports, allows, ["192.0.2.53"], [])[LAYOUT.conf]


def test_each_workload_has_its_own_named_port_on_loopback():
    text = conf({"alpha": [], "beta-1": []})
    assert "http_port 127.0.0.1:3130 name=wl_alpha ssl-bump" in text
    assert "http_port 127.0.0.1:3131 name=wl_beta_1 ssl-bump" in text
    assert "generate-host-certificates=off" in text


def test_a_connect_is_allowed_only_for_its_workloads_name_and_port():
    files = render(LAYOUT, {"alpha": 3130}, {"alpha": [("a.test", 443)]}, [], [])
    text = files[LAYOUT.conf]
    assert (
        "http_access allow wl_alpha !CONNECT http_proto port_443 wl_alpha_p443 !refused_dst" in text
    )
    assert files[Path("/p/allow/alpha.443")] == "a.test\n"
    assert text.index("http_access deny ip_literal") < text.index("http_access allow")
    # CONNECTs go on to ssl_bump (which terminates what is not on the list); a plain
    # HTTP request to a name resolving to a private address is refused here.
    assert "ssl_bump peek step1 wl_alpha port_443 wl_alpha_p443 !refused_dst" in text
    lines = text.splitlines()
    last_splice = max(i for i, ln in enumerate(lines) if ln.startswith("ssl_bump splice"))
    assert lines.index("ssl_bump terminate all") > last_splice
    assert "http_access deny all" in text


def test_splice_needs_connect_host_and_sni_to_be_the_same_entry():
    text = conf({"alpha": [("a.test", 443), ("b.test", 443)]})
    assert "acl wl_alpha_h0 dstdomain -n a.test" in text
    assert "acl wl_alpha_s0 ssl::server_name --client-requested a.test" in text
    assert "ssl_bump splice step2 wl_alpha wl_alpha_h0 wl_alpha_s0" in text
    assert "ssl_bump splice step2 wl_alpha wl_alpha_h1 wl_alpha_s1" in text
    assert "wl_alpha_h0 wl_alpha_s1" not in text


def test_refused_connects_are_terminated_before_squid_would_bump_them():
    text = conf({"alpha": [("a.test", 443)]})
    lines = text.splitlines()
    first_peek = next(i for i, ln in enumerate(lines) if ln.startswith("ssl_bump peek"))
    assert lines.index("ssl_bump terminate step1 ip_literal") < first_peek
    assert "ssl_bump peek step1 wl_alpha port_443 wl_alpha_p443 !refused_dst" in lines
    assert "ssl_bump peek step1\n" not in text  # never a peek for everyone
    assert " bump" not in text.replace("ssl_bump", "")
    # http_access lets CONNECTs through to ssl_bump (a refusal there would be bumped to
    # show an error page), but never to an address; refusals reset the connection.
    assert lines.index("http_access deny ip_literal") < lines.index(
        "http_access allow CONNECT wl_alpha"
    )
    assert "deny_info TCP_RESET all" in lines


def test_private_loopback_and_metadata_networks_are_refused_once_each():
    text = render(LAYOUT, {"a": 3130}, {"a": []}, [], ["169.254.169.254", "203.0.113.0/24"])
    line = next(ln for ln in text[LAYOUT.conf].splitlines() if ln.startswith("acl refused_dst"))
    nets = line.split()[3:]
    for net in ("10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "192.168.0.0/16", "fc00::/7"):
        assert net in nets
    assert "203.0.113.0/24" in nets and "169.254.169.254/32" not in nets
    assert len(nets) == len(set(nets))


def test_no_helper_or_pinger_is_run_and_nothing_is_cached():
    text = conf({"alpha": []})
    assert "external_acl_type" not in text and "pinger_enable off" in text
    assert "cache deny all" in text and "via off" in text


@pytest.mark.parametrize("entry", ["198.51.100.7", "[2001:db8::1]", "::1", ".10.0.0.1"])
def test_an_ip_address_is_never_an_allowed_domain(entry):
    with pytest.raises(ValueError):
        parse_domain(entry)


def test_names_are_normalised_and_wildcards_kept():
    assert parse_domain("Example.COM.") == "example.com"
    assert parse_domain(".CDN.example") == ".cdn.example"


def test_static_allows_take_the_default_ports_unless_an_entry_names_one():
    spec = WorkloadSpec(user="a", internet="proxy", egress_allow=["a.test", "b.test:8443"])
    assert static_allows(spec, [443, 80]) == [
        Allowed("a.test", 443),
        Allowed("a.test", 80),
        Allowed("b.test", 8443),
    ]


def test_expired_live_allows_are_left_out():
    live = [Allowed("old.test", 443, expires=100.0), Allowed("new.test", 443, expires=300.0)]
    assert current([Allowed("s.test", 443)], live, now=200.0) == [
        ("new.test", 443),
        ("s.test", 443),
    ]


def test_a_wildcard_covers_its_names_on_the_list():
    assert minimal([".a.test", "a.test", "x.a.test", "b.test", "xa.test"]) == [
        ".a.test",
        "b.test",
        "xa.test",
    ]


def test_ports_stay_with_their_workloads_when_others_come_and_go():
    first = assign({}, ["beta", "alpha"], 810)
    assert first == {"alpha": 810, "beta": 811}
    later = assign(first, ["beta", "gamma"], 810)
    assert later == {"beta": 811, "gamma": 810}


def test_a_port_any_workload_could_bind_is_given_up_for_a_privileged_one():
    # Kept from an older provision at 3130: while Squid reconfigured, another workload
    # could bind it first.
    assert assign({"alpha": 3130, "beta": 811}, ["alpha", "beta"], 810) == {
        "alpha": 810,
        "beta": 811,
    }


def test_a_base_port_an_unprivileged_process_may_bind_is_refused():
    with pytest.raises(ValueError, match="not below 1024"):
        assign({}, ["alpha"], 3130)


def test_running_out_of_privileged_ports_is_an_error_not_a_port_above():
    assign({}, ["a", "b"], 1022)
    with pytest.raises(ValueError, match="no proxy port below 1024"):
        assign({}, ["a", "b", "c"], 1022)


LINE = (
    "1796220703.437 3130 CONNECT allowed.test 443 637 3409 TCP_TUNNEL 200 allowed.test "
    "198.51.100.20 splice"
)


def test_an_access_log_line_is_an_event_of_the_workload_of_its_port():
    event = parse(LINE, {3130: "alpha"})
    assert isinstance(event, ev.Proxied)
    assert (event.workload, event.domain, event.port, event.allowed) == (
        "alpha",
        "allowed.test",
        443,
        True,
    )
    assert (event.sni, event.server, event.tls, event.received) == (
        "allowed.test",
        "198.51.100.20",
        "splice",
        3409,
    )


def test_denied_and_terminated_requests_are_refusals():
    denied = LINE.replace("TCP_TUNNEL 200", "TCP_DENIED 403")
    terminated = LINE.replace("TCP_TUNNEL", "NONE_NONE").replace("splice", "terminate")
    for line in (denied, terminated):
        event = parse(line, {3130: "alpha"})
        assert event is not None and not event.allowed


def test_the_peeks_own_record_before_a_tunnel_is_not_a_second_event():
    assert parse(LINE.replace("TCP_TUNNEL", "NONE_NONE"), {3130: "alpha"}) is None


def test_a_line_from_a_port_no_longer_anyones_is_no_event():
    assert parse(LINE, {3131: "beta"}) is None


@pytest.mark.parametrize(
    "line",
    [LINE + " extra", "garbage", LINE.replace(" 443 ", " 4x3 ", 1), LINE.replace("1796", "x")],
)
def test_a_line_of_another_shape_is_malformed_not_skipped(line):
    with pytest.raises(BadLine):
        parse(line, {3130: "alpha"})


def test_an_escaped_sni_that_is_no_name_is_kept_as_such():
    line = LINE.replace(" allowed.test 198", " x%0A1796%20forged%0Ay 198")
    event = parse(line, {3130: "alpha"})
    assert event is not None and event.sni == "(not a name)"


def test_client_text_in_the_log_is_url_escaped():
    for code in ("%#>rd", "%#ssl::>sni", "%#rm", "%#ssl::bump_mode"):
        assert code in LOGFORMAT


def test_the_cache_manager_and_other_schemes_are_refused_and_names_resolved_last():
    text = conf({"alpha": [("a.test", 80)]})
    lines = text.splitlines()
    assert lines.index("http_access deny manager") < lines.index("http_access deny ip_literal")
    assert "cachemgr_passwd disable all" in lines
    [plain] = [ln for ln in lines if ln.startswith("http_access allow wl_alpha !CONNECT")]
    assert plain.split()[4:] == ["http_proto", "port_80", "wl_alpha_p80", "!refused_dst"]
    assert not [ln for ln in lines if ln.startswith("http_access deny refused_dst")]
    assert not [ln for ln in lines if ln.startswith("ssl_bump terminate step1 refused_dst")]


def test_private_networks_are_refused_inside_the_nat64_prefix_too():
    text = conf({"alpha": []})
    line = next(ln for ln in text.splitlines() if ln.startswith("acl refused_dst"))
    assert "64:ff9b::c0a8:0/112" in line.split() and "64:ff9b::a00:0/104" in line.split()


def _cache_log(tmp_path, text: str) -> ProxyLayout:
    layout = ProxyLayout(tmp_path)
    layout.var.mkdir(parents=True, exist_ok=True)
    layout.cache_log.write_text(text)
    return layout


SQUID = "2026/12/03 11:05:20| "
ACCEPT = (
    SQUID + "Accepting SSL bumped HTTP Socket connections at conn9 local=127.0.0.1:{} "
    "remote=[::] FD 13 flags=9\n"
)


def test_a_reload_is_done_once_every_port_accepts_again_after_a_reconfigure(tmp_path):
    layout = _cache_log(
        tmp_path,
        "old\n"
        + SQUID
        + "Reconfiguring Squid Cache (version 5.7)...\n"
        + ACCEPT.format(3300)
        + ACCEPT.format(3301),
    )
    assert accepting_again(layout, 0, [3300, 3301], 0.0)
    assert not accepting_again(layout, 0, [3300, 3301, 3302], 0.0)


def test_ports_accepting_before_the_reconfigure_do_not_count(tmp_path):
    text = ACCEPT.format(3300) + SQUID + "Reconfiguring Squid Cache (version 5.7)...\n"
    assert not accepting_again(_cache_log(tmp_path, text), 0, [3300], 0.0)


def test_a_second_reconfigure_begun_since_must_finish_too(tmp_path):
    # Two allows' signals can make two reconfigures; the later one read the later files.
    again = SQUID + "Reconfiguring Squid Cache (version 5.7)...\n"
    layout = _cache_log(tmp_path, again + ACCEPT.format(3300) + again)
    assert not accepting_again(layout, 0, [3300], 0.0)
    with layout.cache_log.open("a") as f:
        f.write(ACCEPT.format(3300))
    assert accepting_again(layout, 0, [3300], 0.0)


def test_only_the_log_past_the_offset_is_read(tmp_path):
    before = SQUID + "Reconfiguring Squid Cache (version 5.7)...\n" + ACCEPT.format(3300)
    layout = _cache_log(tmp_path, before)
    assert not accepting_again(layout, len(before.encode()), [3300], 0.0)


def test_request_headers_squid_dumps_into_its_log_cannot_pass_for_its_own_lines(tmp_path):
    # On a forwarding loop Squid logs the request's headers: a workload writes those.
    forged = (
        SQUID
        + "WARNING: Forwarding loop detected for:\n"
        "X-A: 2026/12/03 11:05:20| Reconfiguring Squid Cache\n"
        "2026/12/03 11:05:20| Reconfiguring Squid Cache (version 5.7)...\n".replace("2026", "X2026")
        + "Accepting SSL bumped HTTP Socket connections at c local=127.0.0.1:3300 remote=x\n"
    )
    layout = _cache_log(tmp_path, SQUID + "Reconfiguring Squid Cache (version 5.7)...\n" + forged)
    assert not accepting_again(layout, 0, [3300], 0.0)


def test_the_tail_of_an_overlong_line_is_not_taken_for_a_line(tmp_path):
    long = "X-A: " + "a" * 70_000 + ACCEPT.format(3300).rstrip("\n") + "\n"
    layout = _cache_log(tmp_path, SQUID + "Reconfiguring Squid Cache (version 5.7)...\n" + long)
    assert not accepting_again(layout, 0, [3300], 0.0)


def test_a_cache_log_that_is_a_fifo_or_a_symlink_is_not_read(tmp_path):
    layout = ProxyLayout(tmp_path)
    layout.var.mkdir()
    os.mkfifo(layout.cache_log)  # opening it to read would block for ever
    assert not accepting_again(layout, 0, [3300], 0.2)
    layout.cache_log.unlink()
    target = tmp_path / "elsewhere"
    target.write_text(SQUID + "Reconfiguring Squid Cache (version 5.7)...\n" + ACCEPT.format(3300))
    layout.cache_log.symlink_to(target)
    assert not accepting_again(layout, 0, [3300], 0.0)
