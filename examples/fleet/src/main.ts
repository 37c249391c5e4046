import { parseArgs } from "node:util";
import { startFleet } from "./fleet";

const { values } = parseArgs({
  options: { duration: { type: "string" }, help: { type: "boolean", short: "h" } },
  strict: true,
});
if (values.help) {
  console.log(`usage: npm run fleet [-- --duration <seconds>]

Environment: MQTT_URL (default: an embedded broker), DATABASE_URL (default: PGlite in memory),
SPARKPLUG_GROUP (default: plant-1). Runs until Ctrl-C, or for --duration seconds.`);
  process.exit(0);
}
const duration = values.duration === undefined ? undefined : Number(values.duration);
if (duration !== undefined && !(Number.isFinite(duration) && duration > 0)) {
  console.error(`--duration must be a number of seconds above 0, not "${values.duration}"`);
  process.exit(2);
}

const fleet = await startFleet({
  ...(process.env.MQTT_URL ? { mqttUrl: process.env.MQTT_URL } : {}),
  ...(process.env.DATABASE_URL ? { databaseUrl: process.env.DATABASE_URL } : {}),
  ...(process.env.SPARKPLUG_GROUP ? { group: process.env.SPARKPLUG_GROUP } : {}),
});
console.log(`broker:   ${fleet.brokerUrl} (${fleet.broker})`);
console.log(`group:    ${fleet.group}   watch it: mosquitto_sub -L '${fleet.brokerUrl}/spBv1.0/${fleet.group}/#' -v`);
console.log(`database: ${fleet.database === "pglite" ? "PGlite, in memory" : "DATABASE_URL"}`);
console.log(`machines: ${fleet.machines.map((machine) => `${machine.id} (${machine.protocol})`).join(", ")}`);
console.log(duration === undefined ? "running; Ctrl-C stops" : `running for ${duration} s`);

const since = Date.now();
async function status(): Promise<void> {
  const health = fleet.host.health();
  const parts: string[] = [];
  for (const machine of fleet.machines) {
    const tag = machine.system.tags.list()[0]!.name;
    const rows = await fleet.store.samples.readSamples({
      tag: machine.centralTag(tag),
      from: since,
      to: Date.now() + 1,
    });
    const edge = health.edgeNodes.find((node) => node.edgeNodeId === machine.id);
    parts.push(`${machine.id} ${edge?.state ?? "unknown"}, ${rows.length} rows of ${tag}`);
  }
  console.log(
    `t=${Math.round((Date.now() - since) / 1_000)}s  stored ${health.samples.stored} samples  |  ${parts.join("  |  ")}`,
  );
}

let stopping = false;
async function shutdown(): Promise<void> {
  if (stopping) return;
  stopping = true;
  clearInterval(timer);
  await status();
  await fleet.stop();
  console.log("stopped");
}
const timer = setInterval(() => void status(), 5_000);
process.once("SIGINT", () => void shutdown());
process.once("SIGTERM", () => void shutdown());
if (duration !== undefined) setTimeout(() => void shutdown(), duration * 1_000);
