"""The pipeline in process, without sockets: a real config, policy, trail, broker and
grants, with a fake journal sender standing in for journald (tests and benches)."""

from __future__ import annotations

import struct
from pathlib import Path

import msgspec

from policy import load_policy_texts
from supervisor.actions import POLICY_CATALOG, normalise_params
from supervisor.approvals.broker import Broker
from supervisor.approvals.grants import GrantStore
from supervisor.audit import Auditor
from supervisor.audit.journal import JournalUnavailable
from supervisor.config import Paths, load_config
from supervisor.identity import Peer
from supervisor.pipeline import Caller, Job, Outcome, Pipeline, grant_recorder
from supervisor.state import DaemonState
from supervisor.wire.intents import Request


class FakeJournal:
    """Takes records as journald would, keeping their fields; `down` refuses them."""

    def __init__(self) -> None:
        self.records: list[dict[str, str]] = []
        self.down = False

    def send(self, payload: bytes) -> None:
        if self.down:
            raise JournalUnavailable(111, "journald is down (fake)")
        self.records.append(parse(payload))

    def close(self) -> None:
        pass

    def finals(self) -> list[dict[str, str]]:
        return [r for r in self.records if r.get("CLAWVISOR_FINAL") == "1"]


def parse(payload: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    i = 0
    while i < len(payload):
        nl = payload.index(b"\n", i)
        line = payload[i:nl]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value.decode()
            i = nl + 1
        else:  # KEY\n<u64 length><data>\n
            (n,) = struct.unpack("<Q", payload[nl + 1 : nl + 9])
            fields[line.decode()] = payload[nl + 9 : nl + 9 + n].decode()
            i = nl + 9 + n + 1
    return fields


class Env:
    def __init__(self, tmp: Path, policy: str, fallback_ok: bool = True) -> None:
        etc = tmp / "etc"
        etc.mkdir()
        (etc / "workloads.toml").write_text(
            '[workloads.w]\nuser = "nobody"\n[workloads.v]\nuser = "daemon"\n'
        )
        (etc / "clawvisor.toml").write_text(
            '[executors.open-url]\nargv = ["/bin/true", "{url}"]\n[monitors]\nenabled = false\n'
        )
        log = tmp / "log"
        if not fallback_ok:
            log.mkdir()
            (log / "audit.jsonl").mkdir()  # the fallback cannot be opened either
        paths = Paths(config_dir=etc, runtime_dir=tmp / "run", state_dir=tmp / "state", log_dir=log)
        self.config = load_config(paths)
        self.journal = FakeJournal()
        self.trail = Auditor(log, sender=self.journal, warn=open("/dev/null", "w"))  # noqa: SIM115
        self.grants = GrantStore(tmp / "state" / "grants.json")
        self.broker = Broker(
            self.trail.note,
            tmp / "state" / "pending.json",
            record_grant=grant_recorder(self.grants, self.trail, 4096),
        )
        self.state = DaemonState(self.config, self.load(policy))
        self.pipeline = Pipeline(self.state, self.trail, self.broker, self.grants)
        account = self.config.workloads["w"]
        self.caller = Caller(peer=Peer(pid=1234, uid=account.uid, gid=account.gid), account=account)

    def load(self, policy: str):
        return load_policy_texts(
            [("policy.d/10.toml", policy)],
            POLICY_CATALOG,
            self.config.tags,
            normalise=normalise_params,
        )

    def request(self, rid: str, intent: dict) -> Request:
        return msgspec.convert({"id": rid, "intent": intent}, Request)

    async def submit(self, rid: str, intent: dict, job: Job | None = None) -> Outcome:
        answer = self.pipeline.submit(self.caller, self.request(rid, intent), job)
        return answer if isinstance(answer, Outcome) else await answer

    def finals_of(self, rid: str) -> list[dict[str, str]]:
        return [r for r in self.journal.finals() if r.get("CLAWVISOR_INTENT_ID") == rid]
