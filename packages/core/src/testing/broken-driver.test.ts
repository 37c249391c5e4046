import { describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { GOOD } from "../domain/quality";
import type { Disposer } from "../domain/disposer";
import type { Sample } from "../domain/sample";
import { defineTags, type Tag, type TagValue } from "../domain/tags";
import { SimulatedPlc } from "../memory/simulated-plc";
import type { DriverStatus, PlcDriver } from "../ports/plc-driver";
import type { DriverStatusChange } from "../ports/plc-driver-types";
import { plcDriverConformance, type PlcDriverFixture } from "./plc-driver-conformance";

// A driver written to break one rule of the contract at a time. The suite must fail it, by name.

type BrokenRule =
  | "none"
  | "silent-drop"
  | "ignores-abort"
  | "plain-errors"
  | "works-after-close"
  | "status-after-close"
  | "write-abort-ignored"
  | "read-after-close"
  | "one-shot"
  | "wrong-type";

const tags = defineTags({
  "chamber.pressure": { dataType: "float64" },
  "heater.temperature": { dataType: "float32" },
  "heater.setpoint": { dataType: "float64", access: "readwrite" },
});

class BrokenDriver implements PlcDriver {
  readonly driverApiVersion = "1" as const;
  readonly name = "broken";
  readonly capabilities = { subscribe: false, browse: false };
  readonly #plc: SimulatedPlc;
  readonly #rule: BrokenRule;
  #closed = false;
  readonly #listeners = new Set<(change: DriverStatusChange) => void>();

  constructor(plc: SimulatedPlc, rule: BrokenRule) {
    this.#plc = plc;
    this.#rule = rule;
  }

  get status(): DriverStatus {
    return this.#rule === "works-after-close" && this.#closed ? "closed" : this.#plc.status;
  }

  onStatusChange(listener: (change: DriverStatusChange) => void): Disposer {
    this.#listeners.add(listener);
    const dispose = this.#plc.onStatusChange((change) => {
      // "silent-drop": the peer hung up, and nobody is told.
      if (this.#rule === "silent-drop" && change.from === "connected" && change.to === "disconnected") return;
      listener(change);
    });
    return () => {
      this.#listeners.delete(listener);
      dispose();
    };
  }

  connect(signal?: AbortSignal): Promise<void> {
    // "one-shot": once closed, never connects again.
    if (this.#rule === "one-shot" && this.#closed) {
      return Promise.reject(new KilnError("KILN_CONNECTION_FAILED", "closed for good", { retryable: false }));
    }
    return this.#call(() => this.#plc.connect(this.#signal(signal)));
  }

  async close(): Promise<void> {
    this.#closed = true;
    // "works-after-close": says closed, keeps the connection open.
    if (this.#rule !== "works-after-close") await this.#plc.close();
    // "status-after-close": a late event from the old connection claims it is connected again.
    if (this.#rule === "status-after-close") {
      setTimeout(() => {
        for (const listener of this.#listeners) listener({ from: "closed", to: "connected" } as DriverStatusChange);
      }, 5);
    }
  }

  read(tags: readonly Tag[], signal?: AbortSignal): Promise<Sample[]> {
    return this.#call(async () => {
      const samples = await this.#plc.read(tags, this.#signal(signal));
      // "read-after-close": the reply is handed out late, after close, as good data.
      if (this.#rule === "read-after-close") await new Promise((resolve) => setTimeout(resolve, 5));
      // "wrong-type": a float read as the device's text, marked good.
      if (this.#rule === "wrong-type")
        return samples.map((sample) => ({ ...sample, value: "12.5 mbar", quality: GOOD }));
      return samples;
    });
  }

  write(tag: Tag, value: TagValue, signal?: AbortSignal): Promise<void> {
    const passed = this.#rule === "write-abort-ignored" ? undefined : this.#signal(signal);
    return this.#call(() => this.#plc.write(tag, value, passed));
  }

  #signal(signal: AbortSignal | undefined): AbortSignal | undefined {
    return this.#rule === "ignores-abort" ? undefined : signal;
  }

  async #call<T>(operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (error) {
      // "plain-errors": every failure becomes an untyped Error.
      if (this.#rule === "plain-errors") throw new Error((error as Error).message);
      throw error;
    }
  }
}

function fixture(rule: BrokenRule): PlcDriverFixture {
  const plc = new SimulatedPlc({ tags });
  return {
    driver: new BrokenDriver(plc, rule),
    readable: [tags.get("chamber.pressure"), tags.get("heater.temperature")],
    writable: [{ tag: tags.get("heater.setpoint"), value: 42.5 }],
    readOnly: tags.get("chamber.pressure"),
    missing: { ...tags.get("heater.temperature"), name: "not.on.this.plc" },
    unreachable: () => {
      const unreachable = new SimulatedPlc({ tags });
      unreachable.faults.unreachable = true;
      return new BrokenDriver(unreachable, rule);
    },
    rejectedWrite: { tag: { ...tags.get("heater.setpoint"), name: "not.on.this.plc" }, value: 1 },
    dropConnection: () => plc.dropConnection(),
    stall: () => {
      plc.faults.hang = true;
    },
    cleanup: () => plc.close(),
  };
}

/** Registers the suite with a collecting `test`, runs every case, and returns the names of those that failed. */
async function failedCases(rule: BrokenRule): Promise<{ all: string[]; failed: string[] }> {
  const cases: { name: string; body: () => Promise<void> }[] = [];
  plcDriverConformance({
    test: (name, body) => void cases.push({ name: name.replace(/^broken: /, ""), body }),
    expect,
    name: "broken",
    capabilities: { subscribe: false, browse: false },
    features: { missing: true, unreachable: true },
    promptMs: 50,
    factory: async () => fixture(rule),
  });
  const failed: string[] = [];
  for (const { name, body } of cases) {
    await body().catch(() => failed.push(name));
  }
  return { all: cases.map((entry) => entry.name), failed };
}

const CAUGHT_BY: Record<Exclude<BrokenRule, "none">, readonly string[]> = {
  "silent-drop": [
    "a connection dropped by the device is reported as a status change; calls then succeed or fail retryably",
  ],
  "ignores-abort": [
    "connect with an already-aborted signal rejects with KILN_ABORTED and does not connect",
    "connect aborted while in progress rejects promptly with KILN_ABORTED",
    "read with an already-aborted signal rejects with KILN_ABORTED",
    "a read the device does not answer rejects promptly when its signal aborts",
    "a write sent to a device that does not answer says it may have landed (details.sent true) when its signal aborts",
  ],
  "plain-errors": [
    "connect to an unreachable endpoint rejects with a retryable KILN_CONNECTION_FAILED",
    "a write the device refuses rejects with KILN_WRITE_REJECTED (or the documented code)",
  ],
  "works-after-close": [
    "close is idempotent; later reads and writes reject with KILN_NOT_CONNECTED, not retryable",
    "close during connect wins: the driver ends closed and reads reject with KILN_NOT_CONNECTED",
  ],
  "status-after-close": ["after close no status change is reported and the status stays closed"],
  "write-abort-ignored": [
    "write with an already-aborted signal rejects with KILN_ABORTED and writes nothing",
    "a write the device does not answer rejects promptly when its signal aborts",
    "a write sent to a device that does not answer says it may have landed (details.sent true) when its signal aborts",
  ],
  "read-after-close": [
    "close while a read is in flight settles the read; one settling after close rejects typed or carries no good sample",
  ],
  "one-shot": ["a closed driver connects again (close, connect, read)"],
  "wrong-type": ["read(tags) returns one sample per tag, in order"],
};

describe("the driver conformance suite fails a broken driver", () => {
  test("the same driver with no rule broken passes every case (the failures below are the rules')", async () => {
    const { all, failed } = await failedCases("none");
    expect(all.length).toBeGreaterThanOrEqual(20);
    expect(failed).toEqual([]);
  });

  for (const [rule, cases] of Object.entries(CAUGHT_BY)) {
    test(`a driver that breaks "${rule}" fails: ${cases.join("; ")}`, async () => {
      const { all, failed } = await failedCases(rule as BrokenRule);
      for (const name of cases) expect(all).toContain(name);
      expect(failed).toEqual(expect.arrayContaining([...cases]));
    });
  }
});
