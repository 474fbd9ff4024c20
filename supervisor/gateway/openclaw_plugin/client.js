// One connection to clawvisor's intents socket: newline-delimited JSON, replies matched to
// requests by id, `cancel` for a request the agent abandoned, and the daemon's
// `capabilities_changed` events. Node's `net` only: the plugin runs inside the workload's
// OpenClaw gateway and must bring nothing else with it.
import net from "node:net";
import fs from "node:fs";
import path from "node:path";

export const SHARED_SOCKET = "/run/clawvisor/intents.sock";
const MAX_LINE = 1024 * 1024;

/** The caller's own socket beside the shared one (by-uid/UID.sock), when it is there. */
export function ownSocket(shared) {
  if (path.basename(shared) !== "intents.sock" || typeof process.geteuid !== "function") {
    return null;
  }
  const own = path.join(path.dirname(shared), "by-uid", `${process.geteuid()}.sock`);
  return fs.existsSync(own) ? own : null;
}

function connectTo(socketPath) {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection({ path: socketPath });
    sock.once("connect", () => {
      sock.removeAllListeners("error");
      resolve(sock);
    });
    sock.once("error", reject);
  });
}

/** Why the socket could not be used, and what to fix, in one line. */
export function unreachable(socketPath, err) {
  const fix = {
    ENOENT: "no socket there: is clawvisor installed and clawvisor-intents.socket up, or is the plugin's `socket` wrong?",
    EACCES: "permission denied: this user is not the gateway of a provisioned workload",
    ECONNREFUSED: "nothing listening: start clawvisor (systemctl start clawvisor-intents.socket)",
  }[err && err.code] || "see journalctl -u clawvisor";
  return `cannot reach clawvisor at ${socketPath} (${err && err.message}): ${fix}`;
}

export class Clawvisor {
  constructor(socketPath = SHARED_SOCKET) {
    this.socketPath = socketPath;
    this.sock = null;
    this.connecting = null;
    this.buf = "";
    this.waiting = new Map();
    this.nextId = 0;
    /** Bumped on every `capabilities_changed` event: the policy in force was reloaded. */
    this.generation = 0;
  }

  async connection() {
    if (this.sock && !this.sock.destroyed) return this.sock;
    if (!this.connecting) {
      this.connecting = this.open().finally(() => {
        this.connecting = null;
      });
    }
    return this.connecting;
  }

  async open() {
    const own = ownSocket(this.socketPath);
    let sock = null;
    if (own) {
      try {
        sock = await connectTo(own);
      } catch {
        sock = null; // not ours after all (a stale file): the shared socket decides
      }
    }
    if (!sock) {
      try {
        sock = await connectTo(this.socketPath);
      } catch (err) {
        throw new Error(unreachable(this.socketPath, err));
      }
    }
    sock.setEncoding("utf8");
    sock.on("data", (chunk) => this.data(chunk));
    sock.on("close", () => this.lost("clawvisor closed the connection"));
    sock.on("error", (err) => this.lost(`connection error: ${err.message}`));
    // Idle, the connection must not keep a one-shot `openclaw agent` process alive.
    sock.unref();
    this.sock = sock;
    this.buf = "";
    // A reload may change what this workload may do; the daemon says so on this line.
    this.generation += 1;
    this.send({ id: this.id("w"), watch: "capabilities" });
    return sock;
  }

  id(prefix) {
    this.nextId += 1;
    return `${prefix}${this.nextId}`;
  }

  send(obj) {
    this.sock.write(JSON.stringify(obj) + "\n");
  }

  data(chunk) {
    this.buf += chunk;
    if (this.buf.length > MAX_LINE && !this.buf.includes("\n")) {
      this.sock.destroy(new Error("reply line too long"));
      return;
    }
    let nl;
    while ((nl = this.buf.indexOf("\n")) >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      let msg;
      try {
        msg = JSON.parse(line);
      } catch {
        continue;
      }
      if (msg && msg.event === "capabilities_changed") {
        this.generation += 1;
        continue;
      }
      const waiter = msg && typeof msg.id === "string" ? this.waiting.get(msg.id) : undefined;
      if (waiter) {
        this.waiting.delete(msg.id);
        waiter.resolve(msg);
      }
    }
  }

  lost(why) {
    if (this.sock) this.sock.destroy();
    this.sock = null;
    for (const waiter of this.waiting.values()) waiter.reject(new Error(why));
    this.waiting.clear();
  }

  /**
   * Send one intent and wait for its reply. An abort (the agent gave up on the call) or
   * the timeout sends `cancel`: a pending ask is withdrawn and nothing runs (its reply,
   * `cancelled`, follows at once); an action already running finishes, and its own reply
   * is still what this returns, however long it takes. One request's trouble never
   * closes the connection other calls share.
   */
  async request(intent, { timeoutMs = 0, signal } = {}) {
    const sock = await this.connection();
    if (signal && signal.aborted) return { reply: null, cancelled: "aborted" };
    const id = this.id("r");
    const reply = new Promise((resolve, reject) => this.waiting.set(id, { resolve, reject }));
    const timers = [];
    let cancelled = null;
    const cancel = (why) => {
      if (cancelled || !this.waiting.has(id) || sock.destroyed) return;
      cancelled = why;
      const cid = `${id}-cancel`;
      this.waiting.set(cid, {
        resolve: (msg) => {
          const state = msg && msg.result && msg.result.state;
          // withdrawn: the request's own `cancelled` reply is on its way; running: it
          // ends when the executor does; unknown: its reply crossed the cancel.
          if (state !== "withdrawn" && state !== "running" && state !== "unknown") {
            this.fail(id, "clawvisor did not accept the cancel");
          }
        },
        reject: () => {},
      });
      this.send({ id: cid, cancel: id });
      // A withdrawn or crossed request is answered at once; one that is not, is not
      // answered at all: give up on it (alone) rather than wait for ever.
      timers.push(
        setTimeout(() => {
          this.waiting.delete(cid);
        }, 15000),
      );
    };
    const onAbort = () => cancel("aborted");
    if (signal) signal.addEventListener("abort", onAbort, { once: true });
    if (timeoutMs > 0) timers.push(setTimeout(() => cancel("timeout"), timeoutMs));
    sock.ref();
    try {
      this.send({ id, intent });
      const msg = await reply;
      return { reply: msg, cancelled };
    } finally {
      for (const t of timers) clearTimeout(t);
      if (signal) signal.removeEventListener("abort", onAbort);
      this.waiting.delete(`${id}-cancel`);
      if (this.waiting.size === 0 && !sock.destroyed) sock.unref();
    }
  }

  /** Fail one request (and only it) with `why`. */
  fail(id, why) {
    const waiter = this.waiting.get(id);
    if (waiter) {
      this.waiting.delete(id);
      waiter.reject(new Error(why));
    }
  }

  close() {
    if (this.sock) this.sock.end();
    this.sock = null;
  }
}
