import { fileURLToPath, pathToFileURL } from "node:url";
import ModbusRTU from "modbus-serial";
import type { Tag, TagValue } from "@kiln/core";
import { ModbusDriver, ModbusSimulator } from "@kiln/plc-modbus";
import { compareScans, forkReady, machine, stopChild } from "./harness";
import { benchTags } from "./modbus-read";

// modbus-pipeline: modbus-read's 1,000 tags (62 requests) against a simulator in another process that answers
// every request after a fixed 2 ms device delay, concurrently. Kiln with maxInFlight 8 against raw modbus-serial
// issuing the same blocks one after the other with readHoldingRegisters (what most clients do), in the same run.

const MAX_IN_FLIGHT = 8;
const DEVICE_DELAY_MS = 2;
const ROUNDS = 4;
const ROUND_MS = 750;
const WARMUP_SCANS = 3;
const CHILD_FLAG = "KILN_BENCH_MODBUS_PIPELINE_SIMULATOR";

/** Fixed values, so every read of every side must return exactly these. */
function initialValues(tags: readonly Tag[]): Record<string, TagValue> {
  return Object.fromEntries(
    tags.map((tag, index) => [tag.name, tag.dataType === "float32" ? index + 0.5 : (index * 7) % 30_000]),
  );
}

async function serveSimulator(): Promise<void> {
  const { tags } = benchTags();
  const simulator = new ModbusSimulator({ tags, initialValues: initialValues(tags) });
  simulator.injectDelay(DEVICE_DELAY_MS);
  const { port } = await simulator.start();
  process.on("message", (message) => {
    if (message !== "stop") return;
    void simulator.stop().then(() => process.disconnect());
  });
  process.send?.({ port });
}

/** Runs the benchmark and returns its JSON line. */
export async function run(): Promise<Record<string, unknown>> {
  const { tags } = benchTags();
  const { child, ready } = await forkReady<{ port: number }>(
    fileURLToPath(import.meta.url),
    { [CHILD_FLAG]: "1" },
    "modbus simulator",
  );
  const transport = { kind: "tcp", host: "127.0.0.1", port: ready.port } as const;
  const pipelined = new ModbusDriver({ transport, maxInFlight: MAX_IN_FLIGHT });
  const sequential = new ModbusDriver({ transport });
  const raw = new ModbusRTU();
  try {
    await pipelined.connect();
    await sequential.connect();
    await raw.connectTCP("127.0.0.1", { port: ready.port });
    raw.setID(1);
    const plan = pipelined.readPlan(tags);
    const blocks = plan.requests.map((request) => [request.address, request.count] as const);

    const expected = initialValues(tags);
    for (const [side, driver] of [
      ["pipelined", pipelined],
      ["sequential", sequential],
    ] as const) {
      const samples = await driver.read(tags);
      const wrong = samples.filter(
        (sample) => sample.quality.severity !== "good" || sample.value !== expected[sample.tag],
      );
      if (wrong.length > 0)
        throw new Error(`${side}: ${wrong.length} tags not read as served; the benchmark is not valid`);
    }
    const rawScan = async (): Promise<void> => {
      for (const [address, count] of blocks) await raw.readHoldingRegisters(address, count);
    };
    const options = { warmup: WARMUP_SCANS, rounds: ROUNDS, roundMs: ROUND_MS };
    const { kiln, baseline } = await compareScans(
      async () => {
        await pipelined.read(tags);
      },
      rawScan,
      options,
    );
    // For reference: the driver one request at a time against the same raw loop.
    const one = await compareScans(
      async () => {
        await sequential.read(tags);
      },
      rawScan,
      options,
    );
    if (pipelined.maxInFlight !== MAX_IN_FLIGHT) throw new Error("the driver fell back from pipelining");
    return {
      name: "modbus-pipeline",
      unit: "scans/s",
      kiln: Number(kiln.toFixed(2)),
      baseline: Number(baseline.toFixed(2)),
      ratio: Number((kiln / baseline).toFixed(3)),
      kiln_max_in_flight_1: Number(one.kiln.toFixed(2)),
      ratio_max_in_flight_1: Number((one.kiln / one.baseline).toFixed(3)),
      max_in_flight: MAX_IN_FLIGHT,
      device_delay_ms: DEVICE_DELAY_MS,
      requests_per_scan: plan.requests.length,
      values_identical: true,
      ...machine(),
    };
  } finally {
    await pipelined.close();
    await sequential.close();
    await new Promise<void>((resolve) => raw.destroy(() => resolve()));
    await stopChild(child);
  }
}

if (process.env[CHILD_FLAG] === "1") {
  await serveSimulator();
} else if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(JSON.stringify(await run()));
}
