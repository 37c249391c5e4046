// A Kiln service written as CommonJS (`require`, no top-level await) that shuts down cleanly:
// on SIGTERM (a process manager, `docker stop`, systemd) or SIGINT (Ctrl-C) it stops the control
// system — acquisition stops, the logging pipeline drains every buffered sample to the store,
// the PLC and the store close — and only then exits, with code 0.
//
//   npm run service --workspace @kiln/example-quickstart    (then Ctrl-C)
"use strict";
const { createControlSystem, defineTags, SimulatedPlc } = require("@kiln/core");

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", unit: "mbar", range: { min: 0, max: 10 } },
});
const system = createControlSystem({
  machineId: "quickstart-service",
  tags,
  driver: new SimulatedPlc({
    tags,
    sources: { "chamber.pressure": { kind: "sine", offset: 2, amplitude: 1, periodMs: 2_000 } },
  }),
  scanGroups: { default: { periodMs: 100 } },
});

/** The one shutdown: a second signal while stopping waits for the same stop. */
let stopping;
function shutdown(signal) {
  stopping ??= (async () => {
    console.log(`${signal}: stopping`);
    clearInterval(report);
    await system.stop(); // never rejects; bounded by lifecycleTimeoutMs
    const { samplesIn, samplesOut, samplesDropped } = system.health().logging;
    console.log(`stopped: logged ${samplesOut} of ${samplesIn} samples, ${samplesDropped} dropped`);
    process.exit(0);
  })();
  return stopping;
}
// Registered before start, so a signal during start stops it too.
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));

let report;
async function main() {
  await system.start();
  await system.ready();
  const print = () => {
    const pressure = system.read("chamber.pressure");
    console.log(`pressure ${Number(pressure.value).toFixed(3)} mbar (${pressure.quality.severity})`);
  };
  print();
  console.log(`service ready (pid ${process.pid}); stop it with SIGTERM or Ctrl-C`);
  report = setInterval(print, 1_000);
}

main().catch(async (error) => {
  if (stopping) return; // a signal came during start: the stop in progress exits
  console.error(error);
  await system.stop();
  process.exit(1);
});
