// The activity page: the monitors' events per workload, live from /activity/events,
// filterable, with a timeline per workload (events, alerts and intents per 10 s, last
// hour) drawn as SVG built element by element.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const recent = [];
let timeline = {};
const known = new Set();

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function filters() {
  return {
    workload: document.getElementById("workload").value,
    kind: document.getElementById("kind").value.trim(),
    alerts: document.getElementById("alerts").checked,
  };
}

function wanted(e, f) {
  return (!f.workload || e.workload === f.workload) && (!f.kind || e.kind === f.kind) &&
    (!f.alerts || e.alert);
}

function drawTimelines() {
  const box = document.getElementById("timelines");
  box.replaceChildren();
  const f = filters();
  const now = Date.now() / 1000;
  for (const [workload, bars] of Object.entries(timeline)) {
    if (f.workload && workload !== f.workload) continue;
    const figure = el("figure", undefined, "timeline");
    figure.dataset.workload = workload;
    const total = bars.reduce((n, b) => n + b[1] + b[2], 0);
    const intents = bars.reduce((n, b) => n + (b[3] || 0), 0);
    figure.appendChild(el("figcaption", `${workload}: ${total} in the last hour, ${intents} intents`));
    const width = 720, height = 80;
    const chart = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
    const top = Math.max(1, ...bars.map((b) => b[1] + b[2]));
    const topIntents = Math.max(1, ...bars.map((b) => b[3] || 0));
    for (const [start, events, alerts, intents] of bars) {
      const x = Math.floor(((start - (now - 3600)) / 3600) * width);
      const hEvents = (events / top) * (height - 4), hAlerts = (alerts / top) * (height - 4);
      chart.appendChild(svg("rect", { x, y: height - hEvents - hAlerts, width: 2, height: hEvents, class: "bar" }));
      if (alerts) chart.appendChild(svg("rect", { x, y: height - hAlerts, width: 2, height: hAlerts, class: "bar alert" }));
      if (intents) chart.appendChild(svg("rect", { x: x + 2, y: height - (intents / topIntents) * (height - 4), width: 2, height: (intents / topIntents) * (height - 4), class: "bar intent" }));
    }
    figure.appendChild(chart);
    box.appendChild(figure);
  }
}

function drawEvents() {
  const list = document.getElementById("events");
  list.replaceChildren();
  const f = filters();
  let shown = 0;
  for (let i = recent.length - 1; i >= 0 && shown < 300; i--) {
    const e = recent[i];
    if (!wanted(e, f)) continue;
    const line = el("li", e.text, e.alert ? "event alert" : "event");
    line.dataset.workload = e.workload;
    line.dataset.kind = e.kind;
    list.appendChild(line);
    shown++;
  }
}

function learn(workload) {
  if (known.has(workload)) return;
  known.add(workload);
  document.getElementById("workload").appendChild(el("option", workload));
}

function take(events) {
  for (const e of events) { recent.push(e); learn(e.workload); }
  if (recent.length > 5000) recent.splice(0, recent.length - 5000);
}

for (const id of ["workload", "kind", "alerts"]) {
  document.getElementById(id).addEventListener("input", () => { drawTimelines(); drawEvents(); });
}

const source = openStream("/activity/events");
source.onopen = () => status("connected", true);
source.onerror = () => status("reconnecting…", false);
source.onmessage = (message) => {
  const m = JSON.parse(message.data);
  if (m.type === "snapshot") {
    recent.length = 0;
    for (const events of Object.values(m.recent)) take(events);
    recent.sort((a, b) => a.ts - b.ts);
  } else if (m.type === "events") {
    take(m.events);
  }
  timeline = m.timeline;
  Object.keys(timeline).forEach(learn);
  drawTimelines();
  drawEvents();
};
