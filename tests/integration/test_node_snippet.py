"""The README's Node.js gateway snippet, run by Node's own test runner against a real daemon."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import rig
from tests.helpers.rules import rule

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "// clawvisor-client.mjs"

POLICY = rule("status", "gw") + rule("open-url", "gw", "deny")

# Node's built-in runner (node:test): the README's module, used as a gateway would.
SPEC = r"""
import test from "node:test";
import assert from "node:assert/strict";
import { connect } from "./clawvisor-client.mjs";

const path = process.env.CLAWVISOR_SOCKET;

test("200 pipelined requests each resolve with their own result", async () => {
  const cv = connect(path);
  await cv.ready;
  const results = await Promise.all(
    Array.from({ length: 200 }, () => cv.request({ action: "status" })),
  );
  assert.equal(results.length, 200);
  for (const r of results) assert.equal(r.action, "status");
  cv.close();
});

test("a denial rejects with its code, decision and rule, beside allowed requests", async () => {
  const cv = connect(path);
  await cv.ready;
  const [ok, denied, unknown] = await Promise.allSettled([
    cv.request({ action: "status" }),
    cv.request({ action: "open-url", url: "https://example.org/" }),
    cv.request({ action: "search", query: "x" }),
  ]);
  assert.equal(ok.status, "fulfilled");
  assert.equal(ok.value.workloads[0], "gw");
  assert.equal(denied.status, "rejected");
  assert.equal(denied.reason.code, "policy_denied");
  assert.equal(denied.reason.decision, "deny");
  assert.match(denied.reason.rule, /10\.toml:7$/);
  assert.equal(unknown.reason.rule, "default");
  cv.close();
});

test("invalid params reject with invalid_params", async () => {
  const cv = connect(path);
  await cv.ready;
  await assert.rejects(cv.request({ action: "status", shell: "id" }), { code: "invalid_params" });
  cv.close();
});
"""


def snippet() -> str:
    blocks = README.read_text().split("```js\n")[1:]
    [code] = [b.split("```")[0] for b in blocks if b.startswith(MARKER)]
    return code


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node") or shutil.which("nodejs")
    assert found, "Node.js missing: `make setup` installs the nodejs package"
    return found


def test_readme_node_snippet_passes_node_test_against_a_real_daemon(make_user, make_daemon, node):
    gw = make_user()
    daemon = make_daemon({"gw": gw}, {"10.toml": POLICY})
    work = rig.shared_tmpdir("clawvisor-node-")
    try:
        (work / "clawvisor-client.mjs").write_text(snippet())
        (work / "gateway.test.mjs").write_text(SPEC)
        out = subprocess.run(
            [node, "--test", "--test-reporter=tap", str(work / "gateway.test.mjs")],
            cwd=work,
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(work),
                "CLAWVISOR_SOCKET": str(daemon.intents),
            },
            capture_output=True,
            text=True,
            timeout=120,
            **rig.as_user(gw),
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "# pass 3" in out.stdout and "# fail 0" in out.stdout, out.stdout
