// The workloads page: each workload, its last standing verify, and the operator's
// responses (freeze, thaw, cut or restore its network), each confirmed, each audited.
"use strict";

const RESPONSES = [
  ["freeze", "Freeze"], ["thaw", "Thaw"], ["cut-network", "Cut network"],
  ["restore-network", "Restore network"],
];

async function respond(workload, response) {
  if (!window.confirm(`${response} workload ${workload}?`)) return;
  const res = await post("/respond", { workload, response });
  document.getElementById("result").textContent = res.ok
    ? `${workload}: ${res.data.result}` : `${workload}: not done: ${res.data.error}`;
}

async function load() {
  const res = await api("/api/workloads");
  if (!res.ok) { status("clawvisor unreachable", false); return; }
  status("connected", true);
  const data = await res.json();
  const v = data.verify;
  document.getElementById("verify").textContent = v
    ? `last verify ${new Date(v.at * 1000).toISOString()}: ${v.passed} passed, ${v.failed} failed, ${v.skipped} skipped` +
      (v.error ? ` (${v.error})` : "")
    : "no standing verify has run yet";
  const body = document.querySelector("#workloads tbody");
  body.replaceChildren();
  for (const name of data.workloads) {
    const row = el("tr");
    row.dataset.workload = name;
    row.appendChild(el("td", name));
    const failures = v ? v.failures.filter((f) => f.startsWith(name + ":")) : [];
    row.appendChild(el("td", v ? (failures.length ? failures.join("; ") : "all checks passed") : "-",
      failures.length ? "fail" : ""));
    const cell = el("td");
    for (const [response, label] of RESPONSES) {
      const b = el("button", label, response);
      b.type = "button";
      b.addEventListener("click", () => respond(name, response));
      cell.appendChild(b);
    }
    row.appendChild(cell);
    body.appendChild(row);
  }
}

load();
