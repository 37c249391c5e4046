import { createQuickstart } from "./quickstart";

const system = createQuickstart();
system.bus.on("alarm-raise", (event) =>
  console.log(`  alarm raised: ${event.message} (${Number(event.value).toFixed(2)} mbar)`),
);
system.bus.on("alarm-clear", (event) => console.log(`  alarm cleared: ${event.alarmId}`));
await system.start();
console.log(`Kiln quickstart: machine "${system.machineId}" on a simulated PLC, reading for 3 s`);
for (let second = 1; second <= 3; second++) {
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const pressure = system.read("chamber.pressure");
  console.log(`t=${second}s  pressure ${Number(pressure?.value).toFixed(3)} mbar (${pressure?.quality.severity})`);
}
await system.stop();
const { samplesIn, samplesOut, samplesDropped } = system.health().logging;
console.log(`logged ${samplesOut} of ${samplesIn} samples to the store, ${samplesDropped} dropped`);
