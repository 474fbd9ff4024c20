"""Provisioning 20 workloads: clawvisor provision beside the same end state scripted by hand.

The floor does what an administrator's script would: useradd, install -d with modes,
setfacl, and one `nft -f` of an equivalent ruleset, with no planning, no checks and no
read-back. clawvisor's run also plans, verifies ACLs after applying and records the
firewall state. Both run in a network namespace made for the bench, then everything is
removed. Figures: first run, and a second (no-op) run of clawvisor.

    .venv/bin/python -m bench.provision [--workloads 20]
"""

from __future__ import annotations

import argparse
import secrets
import subprocess
import sys
import time
from pathlib import Path

from bench.common import machine, write_result
from tests.helpers import rig

RULESET_HEAD = "table inet floor {\n  chain output { type filter hook output priority 0; }\n"


def floor(root: Path, users: list[str], ns: str) -> float:
    rules = [RULESET_HEAD]
    t0 = time.perf_counter()
    for user in users:
        home = root / "floor-home" / user
        subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                str(home),
                "--shell",
                "/usr/sbin/nologin",
                user,
            ],
            check=True,
        )
        subprocess.run(["install", "-d", "-m", "0700", str(home)], check=True)
        for tier, mode in (
            ("work", "0700"),
            ("agent", "0750"),
            ("ops", "0700"),
            ("config", "0750"),
        ):
            subprocess.run(["install", "-d", "-m", mode, str(home / tier)], check=True)
        subprocess.run(["chown", f"{user}:{user}", str(home / "work")], check=True)
        for tier in ("", "agent", "config"):
            subprocess.run(["setfacl", "-m", f"u:{user}:rx", str(home / tier)], check=True)
        uid = subprocess.run(
            ["id", "-u", user], capture_output=True, text=True, check=True
        ).stdout.strip()
        rules.append(
            f"  chain wl_{user} {{ ip daddr 10.0.0.0/8 counter drop\n"
            f"    ip daddr 192.168.0.0/16 counter drop\n    counter drop\n  }}\n"
        )
        rules.append(f"  chain x_{user} {{\n    meta skuid {uid} jump wl_{user}\n  }}\n")
    rules.append("}\n")
    subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-f", "-"], input="".join(rules), text=True, check=True
    )
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, default=20)
    args = parser.parse_args()
    tag = secrets.token_hex(2)
    root = rig.shared_tmpdir("clawvisor-bench-prov-")
    ns = f"cvtbench{tag}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    cv_users = [f"cvtp{tag}{i:02d}" for i in range(args.workloads)]
    floor_users = [f"cvtf{tag}{i:02d}" for i in range(args.workloads)]
    gw, ops = f"cvtgw{tag}", f"cvtops{tag}"
    try:
        etc = root / "etc"
        etc.mkdir()
        (etc / "clawvisor.toml").write_text(
            f'[server]\nsocket_group = "{gw}"\ncontrol_group = "{ops}"\n'
            f'[provision]\nhome_root = "{root / "home"}"\nunit_dir = "{root / "units"}"\n'
            f'sysctl_file = "{root / "sysctl.conf"}"\ndns = ["192.0.2.53"]\n'
        )
        (etc / "workloads.toml").write_text(
            "".join(
                f'[workloads.w{i:02d}]\nuser = "{u}"\ninternet = "allowlist"\n'
                f'egress_allow = ["198.51.100.{i}:443"]\n\n'
                for i, u in enumerate(cv_users)
            )
        )
        argv = [
            "nsenter",
            f"--net=/run/netns/{ns}",
            "--",
            str(rig.CLAWVISOR),
            "provision",
            "--config-dir",
            str(etc),
            "--state-dir",
            str(root / "state"),
            "--only",
            "users,dirs,firewall",
        ]
        t0 = time.perf_counter()
        first = subprocess.run(argv, capture_output=True, text=True)
        first_s = time.perf_counter() - t0
        assert first.returncode == 0, first.stdout + first.stderr
        t0 = time.perf_counter()
        second = subprocess.run(argv, capture_output=True, text=True)
        second_s = time.perf_counter() - t0
        assert "nothing to change" in second.stdout, second.stdout
        floor_s = floor(root, floor_users, ns)
    finally:
        for u in cv_users + floor_users:
            subprocess.run(["userdel", u], capture_output=True)
            subprocess.run(["groupdel", u], capture_output=True)
        for g in (gw, ops):
            subprocess.run(["groupdel", g], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], check=False)
        rig.cleanup_root(root)
    n = args.workloads
    table = "\n".join(
        [
            f"| figure ({n} workloads) | clawvisor provision | hand-written script | ratio |",
            "| --- | --- | --- | --- |",
            f"| first run, s | {first_s:.2f} | {floor_s:.2f} | {first_s / floor_s:.2f}x |",
            f"| second run (no change), s | {second_s:.2f} | - | - |",
        ]
    )
    write_result(
        "provision",
        {
            "machine": machine(),
            "workloads": n,
            "first_s": first_s,
            "second_s": second_s,
            "floor_s": floor_s,
            "table": table,
        },
    )
    print(f"machine: {machine()}")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
