// What every page of the console shares: building elements (always with textContent:
// nothing a workload wrote is parsed as HTML), its POSTs (with the session's CSRF token),
// and the connection line in the header.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]').content;

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

async function post(path, body) {
  const res = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify(body),
  });
  const data = await res.json().catch(() => ({ error: "no answer" }));
  return { ok: res.ok, status: res.status, data };
}

function status(text, up) {
  const node = document.getElementById("status");
  node.textContent = text;
  node.classList.toggle("down", !up);
}
