import { type Principal, type TagValue } from "@kiln/core";
import { formatModbusAddress, modbusTagAddress } from "@kiln/plc-modbus";
import { lineTags, startModbusLine } from "./modbus-line";

const engineer: Principal = { id: "erin", roles: ["engineer"] };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const show = (value: unknown, digits = 2) =>
  typeof value === "number" && !Number.isInteger(value) ? value.toFixed(digits) : String(value);

const line = await startModbusLine();
const { system, simulator } = line;
system.bus.on("alarm-raise", (event) => console.log(`  alarm raised: ${event.message} (${show(event.value)} °C)`));
system.bus.on("alarm-clear", (event) => console.log(`  alarm cleared: ${event.alarmId}`));

// Every good sample Kiln decodes is compared with what the simulator holds in its registers at that moment
// (the simulator runs in this process, and each register is read once per scan). A tag being written is
// skipped until the written value comes back: a read that crossed the write still carries the old value.
interface Check {
  readonly decoded: TagValue | null;
  readonly served: TagValue;
  readonly matches: number;
  readonly mismatches: number;
}
const checks = new Map<string, Check>();
const pendingWrites = new Map<string, TagValue>();
system.cvt.observeAll(({ sample }) => {
  if (sample.quality.severity !== "good") return;
  if (pendingWrites.has(sample.tag)) {
    if (pendingWrites.get(sample.tag) !== sample.value) return;
    pendingWrites.delete(sample.tag);
  }
  const served = simulator.getValue(sample.tag);
  const check = checks.get(sample.tag) ?? { decoded: sample.value, served, matches: 0, mismatches: 0 };
  checks.set(sample.tag, {
    decoded: sample.value,
    served,
    matches: check.matches + (sample.value === served ? 1 : 0),
    mismatches: check.mismatches + (sample.value === served ? 0 : 1),
  });
});

try {
  const startedAt = Date.now();
  await system.start();
  console.log(
    `Kiln Modbus line: machine "${system.machineId}" on a Modbus TCP simulator at ` +
      `${line.endpoint.host}:${line.endpoint.port}, running for 3 s`,
  );

  await sleep(500);
  const write = (tag: string, value: TagValue, comment?: string) => {
    pendingWrites.set(tag, value);
    return system.writeTag(engineer, tag, value, comment === undefined ? {} : { comment });
  };
  await write("oven.setpoint", 195.5, "product B");
  await write("conveyor.run", true);
  console.log(`  ${engineer.id} (engineer) set oven.setpoint to 195.5 °C and started the conveyor`);

  while (Date.now() - startedAt < 3_000) {
    await sleep(500);
    const value = (tag: string, digits?: number) => show(system.read(tag)?.value, digits);
    console.log(
      `t=${((Date.now() - startedAt) / 1_000).toFixed(1)}s  oven ${value("oven.temperature")} °C ` +
        `(setpoint ${value("oven.setpoint", 1)})  filler ${value("filler.weight")} g  ` +
        `speed ${value("line.speed")} m/s  pieces ${value("pieces.count")}  conveyor ${value("conveyor.run")}`,
    );
  }

  // Read the audit trail while the store is open: stop() closes it.
  const audit = await system.history.audit.query({ from: startedAt, to: Date.now() + 1 });
  await system.stop();

  console.log("\nDecoded by Kiln vs held in the simulator's registers (last sample, and every sample checked):");
  for (const tag of lineTags.list()) {
    const address = modbusTagAddress(tag);
    const where = formatModbusAddress(address) + (address.scale === 1 ? "" : ` ×${address.scale}`);
    const check = checks.get(tag.name);
    const checked = check ? check.matches + check.mismatches : 0;
    const verdict = `${check?.matches ?? 0} of ${checked} match`;
    console.log(
      `  ${tag.name.padEnd(25)} ${where.padEnd(18)} ${show(check?.decoded, 3).padStart(10)} ` +
        `${show(check?.served, 3).padStart(10)}  ${verdict}`,
    );
  }

  console.log("\nAudit trail:");
  for (const entry of audit) {
    console.log(`  ${entry.principal} ${entry.action} ${entry.target} = ${String(entry.newValue)}: ${entry.outcome}`);
  }

  const { samplesIn, samplesOut, samplesDropped } = system.health().logging;
  console.log(`\nlogged ${samplesOut} of ${samplesIn} samples to the store, ${samplesDropped} dropped`);
} finally {
  await line.stop();
}
