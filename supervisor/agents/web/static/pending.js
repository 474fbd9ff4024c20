// The pending page: a live list from /events (server-sent), verdicts by POST /verdict.
// Cards are kept by (VM, request id): a verdict names the card's VM and goes there alone.
"use strict";

const cards = new Map();
const cardKey = (vm, id) => `${vm}\n${id}`;

function left(deadline) {
  return Math.max(0, Math.round(deadline - Date.now() / 1000));
}

async function answer(p, allow, grant, release, card) {
  const reason = card.querySelector("input.reason").value.trim();
  const body = { vm: p.vm, request: p.id, digest: p.digest, allow, grant, release };
  if (!allow && reason) body.reason = reason;
  const errorLine = card.querySelector(".error");
  errorLine.textContent = "";
  const res = await post("/verdict", body);
  if (!res.ok) errorLine.textContent = "not taken: " + (res.data.error || res.status);
}

function render(p) {
  const card = el("li", undefined, "card");
  card.dataset.id = p.id;
  card.dataset.vm = p.vm;
  card.summary = `${p.title}: ${p.body.split("\n")[0]}`;
  card.appendChild(el("h3", p.title));
  card.appendChild(el("pre", p.body, "body"));
  const meta = el("p", "", "meta deadline");
  card.appendChild(meta);
  const tick = () => { meta.textContent = `rule ${p.rule} · ${left(p.deadline)} s to answer` +
    (p.waiting > 1 ? ` · ${p.waiting} waiting` : ""); };
  tick();
  card.tick = setInterval(tick, 1000);
  const buttons = el("div", undefined, "buttons");
  const button = (label, cls, fn) => {
    const b = el("button", label, cls);
    b.type = "button";
    b.addEventListener("click", fn);
    buttons.appendChild(b);
  };
  button("Allow once", "allow-once", () => answer(p, true, "once", 1, card));
  if (p.choices.all) button(`Allow all ${p.waiting}`, "allow-all", () => answer(p, true, "once", p.waiting, card));
  if (p.choices["30m"]) button("Allow 30 min", "allow-30m", () => answer(p, true, "30m", 1, card));
  if (p.choices.always) button("Always", "allow-always", () => answer(p, true, "always", 1, card));
  const reason = el("input", undefined, "reason");
  reason.placeholder = "reason (for a deny)";
  reason.maxLength = 256;
  buttons.appendChild(reason);
  button("Deny", "deny", () => answer(p, false, "once", 1, card));
  card.appendChild(buttons);
  card.appendChild(el("p", "", "error"));
  return card;
}

function show(p) {
  const list = document.getElementById("pending");
  const card = render(p);
  const old = cards.get(cardKey(p.vm, p.id));
  if (old) { clearInterval(old.tick); list.replaceChild(card, old); } else list.appendChild(card);
  cards.set(cardKey(p.vm, p.id), card);
  document.getElementById("empty").hidden = cards.size > 0;
}

function gone(vm, id, reason, by) {
  const card = cards.get(cardKey(vm, id));
  if (!card) return;
  clearInterval(card.tick);
  card.remove();
  cards.delete(cardKey(vm, id));
  const line = el("li", `${card.summary} · ${reason}` + (by ? ` by ${by}` : ""));
  line.dataset.id = id;
  line.dataset.vm = vm;
  document.getElementById("closed").prepend(line);
  document.getElementById("empty").hidden = cards.size > 0;
}

const source = openStream("/events");
source.onmessage = (message) => {
  const m = JSON.parse(message.data);
  if (m.type === "snapshot") {
    for (const card of cards.values()) { clearInterval(card.tick); card.remove(); }
    cards.clear();
    m.pending.forEach(show);
    document.getElementById("empty").hidden = cards.size > 0;
    vmStatus(m.vms);
  } else if (m.type === "pending") {
    show(m.request);
  } else if (m.type === "gone") {
    gone(m.vm, m.id, m.reason, m.by);
  } else if (m.type === "down") {
    for (const card of [...cards.values()]) {
      if (card.dataset.vm === m.vm) gone(m.vm, card.dataset.id, "unavailable", null);
    }
    vmStatus(m.vms);
  }
};

// One VM: "connected" or "clawvisor unreachable: why"; several: each VM named.
function vmStatus(vms) {
  const up = vms.filter((v) => v.why === null).map((v) => v.name);
  const down = vms.filter((v) => v.why !== null);
  if (vms.length === 1 && !vms[0].name) {
    status(up.length ? "connected" : "clawvisor unreachable: " + down[0].why, up.length > 0);
    return;
  }
  const parts = [];
  if (up.length) parts.push("connected to " + up.join(", "));
  for (const v of down) parts.push(`${v.name} unreachable: ${v.why}`);
  status(parts.join("; "), down.length === 0);
}
source.onerror = () => status("reconnecting…", false);
