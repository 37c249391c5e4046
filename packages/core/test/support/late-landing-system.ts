import { createControlSystem, defineTags, MemoryStore, SimulatedPlc, type Principal } from "../../src/index";
import type { Sample } from "../../src/domain/sample";
import type { Tag, TagValue } from "../../src/domain/tags";

// Shared by the late-landing tests (reviews 15g, 15h: late-landing-order, late-landing-fence): a
// system on a SimulatedPlc whose writes the test holds, lands, fails or rejects, with every audit
// entry handed to the store recorded (a store keeps one row per id).

export const admin: Principal = { id: "ada", roles: ["admin"] };
/** The write timeout (ms) of {@link hostile}'s system. */
export const TIMEOUT = 60;
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export const tags = defineTags({
  "heater.setpoint": { dataType: "float64", access: "readwrite", range: { min: 0, max: 400 }, scanGroup: "fast" },
  "valve.h2o": { dataType: "bool", access: "readwrite", scanGroup: "fast" },
  "stirrer.speed": { dataType: "float64", access: "readwrite", range: { min: 0, max: 100 }, scanGroup: "fast" },
  ...Object.fromEntries(
    Array.from({ length: 8 }, (_, index) => [
      `aux.${index}`,
      { dataType: "float64", access: "readwrite", scanGroup: "fast" } as const,
    ]),
  ),
});

export interface Held {
  readonly tag: string;
  readonly value: TagValue;
  /** Lands the write (true), or fails it at the device (false), or rejects with `error`. */
  release(outcome?: boolean | Error): void;
}

/** A system on a SimulatedPlc whose writes matching `hold` are held until released. */
export async function hostile() {
  const plc = new SimulatedPlc({ tags });
  const device: { tag: string; value: TagValue }[] = [];
  const held: Held[] = [];
  let hold: (tag: string, value: TagValue) => boolean | Error = () => false;
  const write = plc.write.bind(plc);
  plc.write = async (tag: Tag, value: TagValue, signal?: AbortSignal) => {
    const holding = hold(tag.name, value);
    if (holding instanceof Error) throw holding;
    if (holding) {
      const outcome = await new Promise<boolean | Error>((resolve) =>
        held.push({ tag: tag.name, value, release: (result = true) => resolve(result) }),
      );
      if (outcome instanceof Error) throw outcome;
      if (!outcome) throw new Error("device refused");
    } else await write(tag, value, signal);
    device.push({ tag: tag.name, value });
  };
  // What the device's reads answer: every sample as read, its source timestamp moved by
  // `clockAheadMs` (a device clock off the host's), or, once, a sample the test hands (`inject`: an
  // old sample a gateway cache or a redelivery answers with).
  const seen: Sample[] = [];
  const inject: Sample[] = [];
  let clockAheadMs = 0;
  const read = plc.read.bind(plc);
  plc.read = async (...args: Parameters<typeof read>) => {
    const answer = (await read(...args)).map((sample) =>
      clockAheadMs === 0 ? sample : { ...sample, timestamp: sample.timestamp + clockAheadMs },
    );
    seen.push(...answer);
    return answer.map((sample) => {
      const index = inject.findIndex((given) => given.tag === sample.tag);
      return index < 0 ? sample : inject.splice(index, 1)[0]!;
    });
  };
  const store = new MemoryStore();
  // Every entry handed to the store (a store keeps one row per id: a second `:fail` would hide).
  const recorded: { id: string; action: string; outcome: string; reason?: string; newValue?: unknown }[] = [];
  const record = store.audit.record.bind(store.audit);
  // An entry the test holds (a start waiting for its entry) is stored once the hold resolves.
  let auditHold: (entry: { action: string }) => Promise<void> | undefined = () => undefined;
  store.audit.record = async (...args: Parameters<typeof record>) => {
    await auditHold(args[0] as { action: string });
    await record(...args);
    recorded.push(args[0] as (typeof recorded)[number]);
  };
  const system = createControlSystem({
    machineId: "reactor-1",
    tags,
    driver: plc,
    store,
    scanGroups: { fast: { periodMs: 20 } },
    acquisition: { timeoutMs: TIMEOUT },
    machine: {
      model: "kiln",
      safeState: [
        { tag: "heater.setpoint", value: 0 },
        { tag: "valve.h2o", value: false },
      ],
    },
  });
  await system.start();
  const from = Date.now() - 1;
  return {
    system,
    /** The simulated device itself: `plc.set(tag, value)` changes what it reads back, as a local panel would. */
    plc,
    held,
    /** Every sample the device's reads answered, in order (before `inject`). */
    seen,
    /** Samples a next read answers instead of the device's (one each). */
    inject: (sample: Sample) => void inject.push(sample),
    /** Moves the device's source timestamps `ms` ahead of the host's clock from the next read on. */
    setClockAhead: (ms: number) => void (clockAheadMs = ms),
    setHold: (rule: (tag: string, value: TagValue) => boolean | Error) => void (hold = rule),
    setAuditHold: (rule: (entry: { action: string }) => Promise<void> | undefined) => void (auditHold = rule),
    values: (tag: string) => device.filter((write) => write.tag === tag).map((write) => write.value),
    heldValue: (value: TagValue) => held.find((call) => call.value === value)!,
    recorded,
    trail: () => system.history.audit.query({ from, to: Date.now() + 1 }),
    problems: () => system.health().problems.join("\n"),
  };
}
