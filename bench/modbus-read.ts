import type { ChildProcess } from "node:child_process";
import { fileURLToPath, pathToFileURL } from "node:url";
import ModbusRTU from "modbus-serial";
import { defineTags, type Tag, type TagDefinitionInput } from "@kiln/core";
import { ModbusDriver, ModbusSimulator } from "@kiln/plc-modbus";
import { compareScans, forkReady, stopChild } from "./harness";

// modbus-read: 1,000 tags scattered over 4,000 holding registers, read by Kiln's planned requests and by raw
// modbus-serial readHoldingRegisters issuing the same blocks, against a simulator in another process.

const TAG_COUNT = 1000;
const REGISTER_SPAN = 4000;
const MAX_REGISTERS_PER_READ = 125;
const MAX_GAP = 8;
const ROUNDS = 6;
const ROUND_MS = 750;
const WARMUP_SCANS = 5;
const CHILD_FLAG = "KILN_BENCH_MODBUS_SIMULATOR";

interface Placed {
  readonly address: number;
  readonly count: number;
}

function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The same 1,000 tags in both processes (and in modbus-pipeline): int16/uint16 (1 register) and float32/int32 (2), no overlaps. */
export function benchTags(): { tags: readonly Tag[]; placed: readonly Placed[] } {
  const random = mulberry32(0x6b696c6e);
  const used = new Uint8Array(REGISTER_SPAN);
  const definitions: Record<string, TagDefinitionInput> = {};
  const placed: Placed[] = [];
  const types = ["int16", "uint16", "int16", "float32", "int32"] as const;
  while (placed.length < TAG_COUNT) {
    const dataType = types[Math.floor(random() * types.length)]!;
    const count = dataType === "float32" || dataType === "int32" ? 2 : 1;
    const address = Math.floor(random() * (REGISTER_SPAN - count + 1));
    if (used[address] || (count === 2 && used[address + 1])) continue;
    used.fill(1, address, address + count);
    definitions[`tag${placed.length}`] = { dataType, address: `HR${address}` };
    placed.push({ address, count });
  }
  return { tags: defineTags(definitions).list(), placed };
}

/**
 * The fewest requests covering every tag, computed independently of Kiln's planner by dynamic programming
 * over the address-sorted tags: a request may serve any run of consecutive tags spanning at most 125
 * registers with no unused stretch longer than MAX_GAP between neighbours.
 */
function optimalRequestCount(placed: readonly Placed[]): number {
  const sorted = [...placed].sort((a, b) => a.address - b.address);
  const best = new Array<number>(sorted.length + 1).fill(Number.POSITIVE_INFINITY);
  best[0] = 0;
  for (let end = 1; end <= sorted.length; end++) {
    const last = sorted[end - 1]!;
    const lastRegister = last.address + last.count - 1;
    for (let start = end - 1; start >= 0; start--) {
      const first = sorted[start]!;
      if (lastRegister - first.address + 1 > MAX_REGISTERS_PER_READ) break;
      if (start < end - 1) {
        const next = sorted[start + 1]!;
        if (next.address - (first.address + first.count) > MAX_GAP) break;
      }
      best[end] = Math.min(best[end]!, best[start]! + 1);
    }
  }
  return best[sorted.length]!;
}

/** Child process: serve the bench tags until told to stop. */
async function serveSimulator(): Promise<void> {
  const { tags } = benchTags();
  const signals: Record<string, { kind: "sine"; amplitude: number; offset: number; periodMs: number }> = {};
  tags.forEach((tag, index) => {
    if (index % 10 === 0) signals[tag.name] = { kind: "sine", amplitude: 100, offset: 200, periodMs: 10_000 };
  });
  const simulator = new ModbusSimulator({ tags, signals });
  const { port } = await simulator.start();
  process.on("message", (message) => {
    if (message !== "stop") return;
    void simulator.stop().then(() => process.disconnect());
  });
  process.send?.({ port });
}

async function startChild(): Promise<{ child: ChildProcess; port: number }> {
  const { child, ready } = await forkReady<{ port: number }>(
    fileURLToPath(import.meta.url),
    { [CHILD_FLAG]: "1" },
    "modbus simulator",
  );
  return { child, port: ready.port };
}

/** Runs the benchmark and returns its JSON line. */
export async function run(): Promise<Record<string, unknown>> {
  const { tags, placed } = benchTags();
  const { child, port } = await startChild();
  const driver = new ModbusDriver({
    transport: { kind: "tcp", host: "127.0.0.1", port },
    planner: { maxRegistersPerRead: MAX_REGISTERS_PER_READ, maxGap: MAX_GAP },
  });
  const raw = new ModbusRTU();
  try {
    await driver.connect();
    await raw.connectTCP("127.0.0.1", { port });
    raw.setID(1);
    const plan = driver.readPlan(tags);
    const blocks = plan.requests.map((request) => [request.address, request.count] as const);

    const kilnScan = async (): Promise<void> => {
      await driver.read(tags);
    };
    const baselineScan = async (): Promise<void> => {
      for (const [address, count] of blocks) await raw.readHoldingRegisters(address, count);
    };

    const check = await driver.read(tags);
    const bad = check.filter((sample) => sample.quality.severity !== "good");
    if (bad.length > 0) throw new Error(`${bad.length} tags read with bad quality; the benchmark is not valid`);
    const { kiln, baseline } = await compareScans(kilnScan, baselineScan, {
      warmup: WARMUP_SCANS,
      rounds: ROUNDS,
      roundMs: ROUND_MS,
    });
    return {
      name: "modbus-read",
      unit: "scans/s",
      kiln: Number(kiln.toFixed(2)),
      baseline: Number(baseline.toFixed(2)),
      ratio: Number((kiln / baseline).toFixed(3)),
      requests_per_scan: plan.requests.length,
      optimal_requests_per_scan: optimalRequestCount(placed),
    };
  } finally {
    await driver.close();
    await new Promise<void>((resolve) => raw.destroy(() => resolve()));
    await stopChild(child);
  }
}

if (process.env[CHILD_FLAG] === "1") {
  await serveSimulator();
} else if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(JSON.stringify(await run()));
}
