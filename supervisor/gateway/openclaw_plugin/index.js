// clawvisor's native OpenClaw plugin: each action the workload's policy could allow or ask
// about is a tool `clawvisor_<action>`, and each call is one intent, decided by the daemon.
//
// The tool list is asked of the daemon before every run (OpenClaw awaits
// `before_model_resolve` before it builds the tool list, whose factory must be
// synchronous), so a reload shows up at the next turn. Names must be declared in
// openclaw.plugin.json ahead of time: it lists every action clawvisor has, and a turn
// offers only those the policy in force lets this workload use.
//
// Never routes an ask through OpenClaw's own approvals: the gateway runs as the workload,
// so the agent could approve itself. Humans answer clawvisor's asks through clawvisor.
import fs from "node:fs";
import { Clawvisor, SHARED_SOCKET } from "./client.js";

const PREFIX = "clawvisor_";
const ADVICE = JSON.parse(fs.readFileSync(new URL("./advice.json", import.meta.url), "utf8"));
const MANIFEST = JSON.parse(
  fs.readFileSync(new URL("./openclaw.plugin.json", import.meta.url), "utf8"),
);
const DECLARED = MANIFEST.contracts.tools;
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
  if (name.startsWith(PREFIX) || HARMLESS.has(name)) return null;
  if (name === "tool_call") {
    const id = String((event.params && event.params.id) || "");
    const target = id.split(":").pop();
    if (target.startsWith(PREFIX)) return null;
  }
  return {
    block: true,
    blockReason:
      `clawvisor: ${name} is one of OpenClaw's own tools, which act without asking the ` +
      "machine owner's policy; it is blocked here. Use the clawvisor_* tools.",
  };
}

export default {
  id: "clawvisor",
  name: "clawvisor",
  description: MANIFEST.description,
  register(api) {
    const cfg = api.pluginConfig || {};
    const client = new Clawvisor(cfg.socket || SHARED_SOCKET);
    let caps = [];
    const log = api.logger || console;

    api.on("before_model_resolve", async () => {
      try {
        const { reply } = await client.request({ action: "capabilities" }, { timeoutMs: 10000 });
        if (reply && reply.status === "ok" && reply.result) {
          caps = reply.result.actions.filter((c) => DECLARED.includes(toolName(c.action)));
        } else {
          caps = []; // refused (not a workload's gateway): no tools, never stale ones
          log.warn(`clawvisor: capabilities refused: ${refusal(reply, null)}`);
        }
      } catch (err) {
        caps = [];
        log.warn(`clawvisor: ${err.message}`);
      }
    });

    api.registerTool(() => caps.map((cap) => tool(client, cap)), { names: DECLARED });

    if (cfg.blockHostTools) {
      api.on("before_tool_call", (event) => hostToolBlocked(event) || undefined);
    }
  },
};
