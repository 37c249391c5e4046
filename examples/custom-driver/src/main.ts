import { createControlSystem, defineTags } from "@kiln/core";
import { KlpDriver, klpAddressesOf } from "./klp-driver";
import { KlpServer } from "./klp-server";

// The device: a made-up KLP oven controller on loopback.
const server = new KlpServer({ values: { "ZONE1.TEMP": 20, "ZONE1.SP": 180, "DOOR.OPEN": false } });
const port = await server.start();

// The tags: each one's `address` is what the driver puts on the wire.
const tags = defineTags({
  "zone1.temperature": { dataType: "float64", unit: "°C", address: "ZONE1.TEMP", scanGroup: "fast" },
  "zone1.setpoint": { dataType: "float64", unit: "°C", access: "readwrite", address: "ZONE1.SP", scanGroup: "fast" },
  "door.open": { dataType: "bool", access: "readwrite", address: "DOOR.OPEN", scanGroup: "fast" },
});

klpAddressesOf(tags.list()); // fail fast on a bad address, before anything starts

const system = createControlSystem({
  machineId: "oven-1",
  tags,
  driver: new KlpDriver({ port }),
  scanGroups: { fast: { periodMs: 100 } },
  acquisition: { reconnect: { initialDelayMs: 100, maxDelayMs: 200 } },
});
system.bus.on("plc-connection-lose", (event) => console.log(`  connection lost: ${event.reason}`));
system.bus.on("plc-connection-restore", (event) => console.log(`  connection restored after ${event.downtimeMs} ms`));
await system.start();
console.log(`Kiln custom driver: machine "${system.machineId}" on ${system.unchecked.driver.name}, reading for 2 s`);
for (let step = 1; step <= 4; step++) {
  server.set("ZONE1.TEMP", 20 + step * 15); // the oven heats up, on the device side
  await new Promise((resolve) => setTimeout(resolve, 500));
  const temperature = system.read("zone1.temperature");
  const door = system.read("door.open");
  console.log(
    `t=${(step * 0.5).toFixed(1)}s  temperature ${String(temperature?.value)} °C (${temperature?.quality.severity})` +
      `  door open ${String(door?.value)} (${door?.quality.severity})`,
  );
  // Switch the device off for a moment: the core marks the tags uncertain and reconnects by itself.
  if (step === 1) await server.stop();
  if (step === 2) await server.start(port);
}
await system.stop();
await server.stop();
const { acquisition, logging } = system.health();
console.log(
  `${acquisition.breaker.successes} bulk reads, ${acquisition.reconnectAttempts} reconnect attempts, ` +
    `${logging.samplesOut} samples logged`,
);
