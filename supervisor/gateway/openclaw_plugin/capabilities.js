// Print the daemon's `capabilities` reply for the calling user, one JSON line, and exit.
// The plugin runs this synchronously while OpenClaw builds a turn's tool list: that
// factory must be synchronous, and hooks that could fetch ahead do not fire in every mode
// (`openclaw agent exec` runs none), so this is how every turn sees the policy in force.
import { Clawvisor, SHARED_SOCKET } from "./client.js";

const client = new Clawvisor(process.argv[2] || SHARED_SOCKET);
try {
  const { reply } = await client.request({ action: "capabilities" }, { timeoutMs: 10000 });
  process.stdout.write(JSON.stringify(reply) + "\n");
  client.close();
} catch (err) {
  process.stderr.write(`${err.message}\n`);
  process.exitCode = 2;
  client.close();
}
