// The policy page: the rules in force in evaluation order (file:line), per workload;
// `policy explain` for a typed request; `policy diff` of a candidate directory.
"use strict";

let rules = [];

function drawRules() {
  const who = document.getElementById("workload").value;
  const body = document.querySelector("#rules tbody");
  body.replaceChildren();
  for (const r of rules) {
    if (who && !(r.source === who || r.source === "*" || r.source.startsWith("@"))) continue;
    const row = el("tr");
    row.dataset.where = r.where;
    if (r.error) { row.appendChild(el("td", r.where)); row.appendChild(el("td", r.error)); }
    else for (const k of ["where", "decision", "action", "source", "target", "params"]) row.appendChild(el("td", r[k]));
    body.appendChild(row);
  }
}

async function load() {
  const res = await api("/api/policy");
  if (!res.ok) { status("clawvisor unreachable", false); return; }
  status("connected", true);
  const data = await res.json();
  rules = data.rules;
  const select = document.getElementById("workload");
  for (const w of data.workloads) select.appendChild(el("option", w));
  drawRules();
}

document.getElementById("workload").addEventListener("input", drawRules);
document.getElementById("explain").addEventListener("submit", async (event) => {
  event.preventDefault();
  const f = new FormData(event.target);
  const params = {};
  for (const pair of String(f.get("params") || "").split(/\s+/).filter(Boolean)) {
    const at = pair.indexOf("=");
    if (at > 0) params[pair.slice(0, at)] = pair.slice(at + 1);
  }
  const res = await post("/api/explain", { source: f.get("source"), action: f.get("action"),
    target: f.get("target") || null, params });
  document.getElementById("explained").textContent = res.ok ? res.data.output : "refused: " + res.data.error;
});
document.getElementById("diff").addEventListener("submit", async (event) => {
  event.preventDefault();
  const res = await post("/api/diff", { dir: new FormData(event.target).get("dir") });
  document.getElementById("diffed").textContent = res.ok ? res.data.output : "refused: " + res.data.error;
});
load();
