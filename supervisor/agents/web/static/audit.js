// The audit page: the chains' status (`audit verify`), and records searched by workload,
// action, outcome and time (`audit log`); a record opens in full on a click.
"use strict";

async function chains() {
  const res = await api("/api/audit/verify");
  const data = await res.json().catch(() => ({}));
  const line = document.getElementById("chains");
  if (!res.ok) { line.textContent = "chain status unavailable: " + (data.error || res.status); return; }
  status("connected", true);
  line.replaceChildren();
  for (const c of data.chains) {
    const item = el("span", `chain ${c.chain}: ${c.records ?? "?"} records, seq ${c.first ?? "?"}..${c.last ?? "?"}: ${c.state}`,
      c.intact ? "chain intact" : "chain broken");
    item.dataset.chain = c.chain;
    line.appendChild(item);
    line.appendChild(el("br"));
  }
}

async function search(form) {
  const f = new FormData(form);
  const q = new URLSearchParams();
  for (const k of ["workload", "action", "outcome", "since"]) if (f.get(k)) q.set(k, f.get(k));
  const res = await api("/api/audit?" + q.toString());
  const data = await res.json().catch(() => ({ error: "no answer" }));
  const list = document.getElementById("records");
  list.replaceChildren();
  list.dataset.query = q.toString();
  if (!res.ok) { document.getElementById("count").textContent = "refused: " + data.error; return; }
  document.getElementById("count").textContent = `${data.records.length} of ${data.total} records` +
    (data.records.length < data.total ? " (the latest)" : "");
  for (const r of data.records) {
    const item = el("li", `${r.when} ${r.kind} ${r.workload || "-"} ${r.action || "-"} ${r.outcome || ""} ${r.message || ""}`, "event record");
    item.dataset.outcome = r.outcome || "";
    const full = el("pre", JSON.stringify(r.fields, null, 2), "full");
    full.hidden = true;
    item.appendChild(full);
    item.addEventListener("click", () => { full.hidden = !full.hidden; });
    list.appendChild(item);
  }
}

document.getElementById("search").addEventListener("submit", (event) => {
  event.preventDefault();
  search(event.target);
});
chains();
search(document.getElementById("search"));
