// What every page of the console shares: building elements (always with textContent:
// nothing a workload wrote is parsed as HTML), the session's key, and its requests.
//
// The key comes once in the login's #fragment and is kept in localStorage, which belongs
// to this origin (scheme, host and port) alone; every API request and stream carries it.
// The session cookie does not suffice: browsers send it to every port of this host.
"use strict";

const key = (() => {
  const m = location.hash.match(/^#k=([A-Za-z0-9_-]+)$/);
  if (m) {
    localStorage.setItem("cv_key", m[1]);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return localStorage.getItem("cv_key") || "";
})();

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

function api(path) {
  return fetch(path, { credentials: "same-origin", headers: { "X-CSRF-Token": key } });
}

async function post(path, body) {
  const res = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": key },
    body: JSON.stringify(body),
  });
  const data = await res.json().catch(() => ({ error: "no answer" }));
  return { ok: res.ok, status: res.status, data };
}

function openStream(path) {
  return new EventSource(`${path}?k=${encodeURIComponent(key)}`);
}

function status(text, up) {
  const node = document.getElementById("status");
  node.textContent = text;
  node.classList.toggle("down", !up);
}
