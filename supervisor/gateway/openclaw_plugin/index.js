// clawvisor's native OpenClaw plugin: each action the workload's policy could allow or ask
// about is a tool `clawvisor_<action>`, and each call is one intent, decided by the daemon.
//
// The tool list is asked of the daemon each time OpenClaw builds a turn's tools, so a
// reload shows up at the next turn. Names must be declared in
// openclaw.plugin.json ahead of time: it lists every action clawvisor has, and a turn
// offers only those the policy in force lets this workload use.
//
// Never routes an ask through OpenClaw's own approvals: the gateway runs as the workload,
// so the agent could approve itself. Humans answer clawvisor's asks through clawvisor.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import { fileURLToPath } from "node:url";
import { Clawvisor, SHARED_SOCKET } from "./client.js";

const PREFIX = "clawvisor_";
const ADVICE = JSON.parse(fs.readFileSync(new URL("./advice.json", import.meta.url), "utf8"));
const MANIFEST = JSON.parse(
  fs.readFileSync(new URL("./openclaw.plugin.json", import.meta.url), "utf8"),
);
const DECLARED = MANIFEST.contracts.tools;
const FETCH = fileURLToPath(new URL("./capabilities.js", import.meta.url));
/** Seconds over a rule's ask timeout before the plugin stops waiting and cancels. */
const MARGIN_S = 30;
/** How long a call waits when no rule asks a human (allow/deny come back at once). */
const PLAIN_WAIT_S = 60;
/** OpenClaw tools the agent may still use with blockHostTools: talking, not acting. */
const HARMLESS = new Set(["tool_search", "tool_describe", "sessions_yield", "session_status"]);

export function toolName(action) {
  return PREFIX + action.replace(/-/g, "_");
}

function waitFor(cap) {
  const asks = cap.rules.filter((r) => typeof r.timeout === "number").map((r) => r.timeout);
  return (asks.length ? Math.max(...asks) + MARGIN_S : PLAIN_WAIT_S) * 1000;
}

/** Text for the agent about a reply that is not `ok`: what decided, and whether to retry. */
export function refusal(reply, cancelled) {
  if (!reply) return "clawvisor: the call was abandoned before it was sent; nothing ran.";
  const err = reply.error || {};
  const code = err.code || "error";
  if (code === "cancelled") {
    const why = cancelled === "timeout" ? "nobody answered in time" : "the call was abandoned";
    return `clawvisor withdrew this request (${why}); nothing ran (cancelled).`;
  }
  const decided = reply.decision
    ? `clawvisor refused this call: ${reply.decision} by rule ${reply.rule}`
    : "clawvisor could not carry out this call";
  let text = `${decided} (${code}): ${err.message || ""}. ${ADVICE[code] || ""}`.trim();
  if (err.stderr) text += `\nstderr: ${err.stderr}`;
  return text;
}

function tool(client, cap) {
  const name = toolName(cap.action);
  return {
    name,
    label: `clawvisor ${cap.action}`,
    description: cap.description,
    parameters: cap.params && Object.keys(cap.params).length ? cap.params : { type: "object" },
    // Offered as itself, not only behind OpenClaw's Tool Search, where its own tools win.
    catalogMode: "direct-only",
    async execute(_toolCallId, params, signal, onUpdate) {
      const intent = { ...(params || {}), action: cap.action };
      const asks = cap.rules.some((r) => r.decision === "ask");
      if (asks && onUpdate) {
        onUpdate({
          content: [{ type: "text", text: "clawvisor may be asking a human; waiting." }],
          details: { phase: "deciding" },
        });
      }
      const { reply, cancelled } = await client.request(intent, { timeoutMs: waitFor(cap), signal });
      if (reply && reply.status === "ok") {
        const body = { decision: reply.decision, rule: reply.rule, result: reply.result };
        return {
          content: [{ type: "text", text: JSON.stringify(body) }],
          details: { status: "ok", ...body },
        };
      }
      // OpenClaw's contract: a failed tool throws; the model reads the message.
      throw new Error(refusal(reply, cancelled));
    },
  };
}

function hostToolBlocked(event) {
  const name = String(event.toolName || "");
  // Exactly this plugin's own tool names: a prefix would let any other plugin's or MCP
  // server's `clawvisor_*` tool through. `tool_call` is never let through: it reaches
  // OpenClaw's whole catalog, and this plugin's tools are offered directly anyway.
  if (DECLARED.includes(name) || HARMLESS.has(name)) return null;
  return {
    block: true,
    blockReason:
      `clawvisor: ${name} is one of OpenClaw's own tools, which act without asking the ` +
      "machine owner's policy; it is blocked here. Use the clawvisor_* tools.",
  };
}

/**
 * The actions the policy in force lets this workload use, asked of the daemon now (a
 * child process: the caller must be synchronous). Nothing on any failure: no stale tools.
 */
function capabilities(socket, log) {
  const run = spawnSync(process.execPath, [FETCH, socket], {
    encoding: "utf8",
    timeout: 15000,
    env: { PATH: process.env.PATH || "/usr/bin:/bin" },
  });
  let reply = null;
  try {
    reply = JSON.parse(run.stdout);
  } catch {
    log.warn(`clawvisor: no tools: ${(run.stderr || String(run.error || "no reply")).trim()}`);
    return [];
  }
  if (!reply || reply.status !== "ok" || !reply.result) {
    log.warn(`clawvisor: no tools: ${refusal(reply, null)}`);
    return [];
  }
  const caps = reply.result.actions.filter((c) => DECLARED.includes(toolName(c.action)));
  const names = caps.map((c) => c.action).join(", ") || "nothing";
  log.info(`clawvisor: workload ${reply.result.workload} may use ${names}`);
  return caps;
}

export default {
  id: "clawvisor",
  name: "clawvisor",
  description: MANIFEST.description,
  register(api) {
    const cfg = api.pluginConfig || {};
    const socket = cfg.socket || SHARED_SOCKET;
    const client = new Clawvisor(socket);
    const log = api.logger || console;

    api.registerTool(
      () => {
        const caps = capabilities(socket, log);
        return caps.map((cap) => tool(client, cap));
      },
      { names: DECLARED },
    );

    if (cfg.blockHostTools) {
      api.on("before_tool_call", (event) => hostToolBlocked(event) || undefined);
    }
  },
};
