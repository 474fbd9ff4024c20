"""Policy evaluation: clawvisor beside cedarpy and casbin, same rules, same requests, same run.

For 10, 100 and 1,000 rules a seeded generator writes one rule set three ways: clawvisor
TOML, Cedar policies, and a casbin model with its policy lines. The rules are disjoint
(each names its own source, action, target and URL glob), so first-match (clawvisor) and
deny-overrides (Cedar, casbin) must give the same answers; the bench checks that they do
on every request before timing anything. Half the requests hit a rule, half match none.

Each figure is the median over requests of the time per decision (each request decided
`--repeat` times in a row). Every engine is used as its documentation intends: policies
parsed once, then one call per decision. A last row shows clawvisor's worst case: every
rule for the same action and source, and a request that matches none of them.

    .venv/bin/python -m bench.policy_eval [--requests 300] [--repeat 20]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import machine, write_result
from policy import evaluate, load_policy_texts
from supervisor.actions import POLICY_CATALOG

WORKLOADS = [f"w{i}" for i in range(20)]
CASBIN_MODEL = """
[request_definition]
r = sub, act, obj, url

[policy_definition]
p = sub, act, obj, url, eft

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = r.sub == p.sub && r.act == p.act && r.obj == p.obj && globMatch(r.url, p.url)
"""

Rule = tuple[str, str, str, str, str | None]  # action, source, target, decision, url glob
Request = tuple[str, str, str, str | None]  # source, action, target, url


def generate(n: int, rng: random.Random, *, worst: bool = False) -> list[Rule]:
    rules: list[Rule] = []
    pairs = [(s, t) for s in WORKLOADS for t in WORKLOADS]
    rng.shuffle(pairs)
    status_pairs = iter(pairs)
    for i in range(n):
        decision = "allow" if rng.random() < 0.8 else "deny"
        if worst:
            rules.append(("open-url", "w0", "w1", decision, f"https://h{i}.example/*"))
        elif rng.random() < 0.3 and i < 300:
            s, t = next(status_pairs)
            rules.append(("status", s, t, decision, None))
        else:
            rules.append(
                (
                    "open-url",
                    rng.choice(WORKLOADS),
                    rng.choice(WORKLOADS),
                    decision,
                    f"https://h{i}.example/*",
                )
            )
    return rules


def requests_for(
    rules: list[Rule], count: int, rng: random.Random, *, worst: bool = False
) -> list[Request]:
    out: list[Request] = []
    for k in range(count):
        if worst:
            out.append(("w0", "open-url", "w1", f"https://nomatch{k}.example/x"))
        elif k % 2 == 0:
            action, s, t, _, glob = rng.choice(rules)
            url = glob.replace("*", f"page{k}") if glob else None
            out.append((s, action, t, url))
        else:
            action = rng.choice(["status", "open-url"])
            url = f"https://h{rng.randrange(5000)}.example/x" if action == "open-url" else None
            out.append((rng.choice(WORKLOADS), action, rng.choice(WORKLOADS), url))
    return out


def clawvisor_engine(rules: list[Rule]) -> Callable[[Request], bool]:
    text = []
    for action, s, t, d, glob in rules:
        text.append(
            f'[[rule]]\naction = "{action}"\nsource = "{s}"\ntarget = "{t}"\n'
            f'decision = "{d}"\n' + (f'params.url = {{ glob = "{glob}" }}\n' if glob else "")
        )
    policy = load_policy_texts(
        [("bench.toml", "\n".join(text))], POLICY_CATALOG, {w: frozenset() for w in WORKLOADS}
    )

    def decide(req: Request) -> bool:
        s, action, t, url = req
        return evaluate(policy, s, action, t, {"url": url} if url else {}).decision == "allow"

    return decide


def cedar_engine(rules: list[Rule]) -> Callable[[Request], bool]:
    import cedarpy

    text = []
    for action, s, t, d, glob in rules:
        effect = "permit" if d == "allow" else "forbid"
        when = f' when {{ context.url like "{glob}" }}' if glob else ""
        text.append(
            f'{effect}(principal == Workload::"{s}", action == Action::"{action}", '
            f'resource == Workload::"{t}"){when};'
        )
    policies = cedarpy.PolicySet.from_str("\n".join(text))
    entities = cedarpy.Entities.from_json_str("[]")

    def decide(req: Request) -> bool:
        s, action, t, url = req
        request = {
            "principal": f'Workload::"{s}"',
            "action": f'Action::"{action}"',
            "resource": f'Workload::"{t}"',
            "context": {"url": url or ""},
        }
        result = cedarpy.is_authorized(request, policies, entities)
        return bool(result.allowed)

    return decide


def casbin_engine(rules: list[Rule], tmp: Path) -> Callable[[Request], bool]:
    import casbin

    model = tmp / "model.conf"
    model.write_text(CASBIN_MODEL)
    csv = tmp / "policy.csv"
    csv.write_text("".join(f"p, {s}, {a}, {t}, {g or '*'}, {d}\n" for a, s, t, d, g in rules))
    enforcer = casbin.Enforcer(str(model), str(csv))

    def decide(req: Request) -> bool:
        s, action, t, url = req
        return bool(enforcer.enforce(s, action, t, url or "-"))

    return decide


def median_us(decide: Callable[[Request], Any], reqs: list[Request], repeat: int) -> float:
    samples = []
    for req in reqs:
        t0 = time.perf_counter()
        for _ in range(repeat):
            decide(req)
        samples.append((time.perf_counter() - t0) / repeat * 1e6)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            rng = random.Random(n)
            rules = generate(n, rng)
            reqs = requests_for(rules, args.requests, rng)
            engines = {
                "clawvisor": clawvisor_engine(rules),
                "cedarpy": cedar_engine(rules),
                "casbin": casbin_engine(rules, Path(tmp)),
            }
            answers = {name: [e(r) for r in reqs] for name, e in engines.items()}
            agree = all(answers[name] == answers["clawvisor"] for name in answers)
            if not agree:
                print(
                    f"engines disagree at {n} rules; figures would compare different things",
                    file=sys.stderr,
                )
                return 1
            row: dict[str, Any] = {
                "rules": n,
                "requests": len(reqs),
                "allowed": sum(answers["clawvisor"]),
            }
            for name, e in engines.items():
                row[f"{name}_us"] = median_us(e, reqs, args.repeat)
            rows.append(row)
        n = max(args.sizes)
        worst = generate(n, random.Random(0), worst=True)
        worst_reqs = requests_for(worst, 50, random.Random(1), worst=True)
        worst_row = {
            "rules": n,
            "case": "worst: all rules for one action and source, no match",
            "clawvisor_us": median_us(clawvisor_engine(worst), worst_reqs, 5),
            "cedarpy_us": median_us(cedar_engine(worst), worst_reqs, 5),
        }
    lines = [
        "| rules | clawvisor µs | cedarpy µs | casbin µs | cedarpy / clawvisor | "
        "casbin / clawvisor |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        c = r["clawvisor_us"]
        lines.append(
            f"| {r['rules']} | {c:.2f} | {r['cedarpy_us']:.2f} | {r['casbin_us']:.1f} "
            f"| {r['cedarpy_us'] / c:.1f}x | {r['casbin_us'] / c:.0f}x |"
        )
    w = worst_row
    lines.append(
        f"| {w['rules']} (worst case) | {w['clawvisor_us']:.1f} | "
        f"{w['cedarpy_us']:.2f} | - | {w['cedarpy_us'] / w['clawvisor_us']:.2f}x | - |"
    )
    table = "\n".join(lines)
    write_result(
        "policy_eval",
        {
            "machine": machine(),
            "rows": rows,
            "worst": worst_row,
            "table": table,
            "agreement": "all engines agreed on every request",
        },
    )
    print(f"machine: {machine()}")
    print(table)
    print("all three engines gave the same decision for every request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
