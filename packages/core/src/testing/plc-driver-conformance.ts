import { KilnError, type KilnErrorCode } from "../domain/errors";
import type { Sample } from "../domain/sample";
import type { Tag, TagValue } from "../domain/tags";
import type { DriverStatusChange, PlcDriver, PlcDriverCapabilities } from "../ports/plc-driver";
import { group, type ConformanceRunner } from "./conformance-runner";

/** What a driver factory returns: a fresh, unconnected driver and the tags to exercise it with. */
export interface PlcDriverFixture {
  /** A new, not yet connected driver, isolated from every other fixture. */
  readonly driver: PlcDriver;
  /** At least two readable tags the device serves. */
  readonly readable: readonly Tag[];
  /** Writable tags with a value to write and read back (the value must differ from the current one). */
  readonly writable: readonly { readonly tag: Tag; readonly value: TagValue }[];
  /** A tag declared read-only. */
  readonly readOnly: Tag;
  /** A tag whose address does not exist on the device (read must give quality bad), if the protocol can tell. */
  readonly missing?: Tag;
  /**
   * Changes a tag's value on the device side (to prove subscriptions deliver it). When absent
   * the suite writes through the driver.
   */
  readonly change?: (tag: Tag, value: TagValue) => Promise<void>;
  /** Releases what the fixture started (simulators, sockets). Called after each test. */
  readonly cleanup?: () => Promise<void>;
}

/** Groups of {@link plcDriverConformance}; each can be switched off. */
export interface PlcDriverConformanceGroups {
  /** Run {@link plcDriverLifecycleConformance}. @default true */
  lifecycle?: boolean;
  /** Run {@link plcDriverReadConformance}. @default true */
  read?: boolean;
  /** Run {@link plcDriverWriteConformance}. @default true */
  write?: boolean;
  /** Run {@link plcDriverSubscribeConformance} (checks nothing unless `subscribe` is declared). @default true */
  subscribe?: boolean;
  /** Run {@link plcDriverBrowseConformance} (checks nothing unless the driver declares `browse`). @default true */
  browse?: boolean;
}

/** Options of {@link plcDriverConformance}. */
export interface PlcDriverConformanceOptions extends ConformanceRunner {
  /** Returns a fresh fixture per test. */
  readonly factory: () => Promise<PlcDriverFixture>;
  /** Groups to run. @default every group, with subscribe/browse only where the driver declares them */
  readonly groups?: PlcDriverConformanceGroups;
  /**
   * The capabilities the driver declares. When given, the `subscribe` and `browse` groups are
   * registered only for declared features (undeclared ones are skipped, not run empty), and the
   * lifecycle group checks the driver declares exactly these. When omitted, each of those tests
   * reads the declaration from the driver and passes without checks for an undeclared feature.
   */
  readonly capabilities?: PlcDriverCapabilities;
  /** Group name for the tests, e.g. the driver's name. @default "PlcDriver conformance" */
  readonly name?: string;
  /** How long to wait for subscription deliveries, in real ms. @default 5000 */
  readonly deliveryTimeoutMs?: number;
}

/**
 * The contract every `PlcDriver` must meet, as tests. Run it from your driver's test file:
 *
 * @example
 * import { test, expect } from "vitest";
 * import { plcDriverConformance } from "@kiln/core/testing";
 * plcDriverConformance({ test, expect, factory: async () => ({ driver: new MyDriver(...), readable, writable, readOnly }) });
 */
export function plcDriverConformance(options: PlcDriverConformanceOptions): void {
  const declared = options.capabilities;
  const groups = {
    lifecycle: true,
    read: true,
    write: true,
    ...options.groups,
    subscribe: (options.groups?.subscribe ?? true) && (declared?.subscribe ?? true),
    browse: (options.groups?.browse ?? true) && (declared?.browse ?? true),
  };
  group(options, options.name ?? "PlcDriver conformance", (test) => {
    const scoped = { ...options, test, describe: undefined };
    if (groups.lifecycle) plcDriverLifecycleConformance(scoped);
    if (groups.read) plcDriverReadConformance(scoped);
    if (groups.write) plcDriverWriteConformance(scoped);
    if (groups.subscribe) plcDriverSubscribeConformance(scoped);
    if (groups.browse) plcDriverBrowseConformance(scoped);
  });
}

type Body = (fixture: PlcDriverFixture) => Promise<void>;

function define(options: PlcDriverConformanceOptions, name: string, body: Body): void {
  options.test(name, async () => {
    const fixture = await options.factory();
    try {
      await body(fixture);
    } finally {
      await fixture.driver.close();
      await fixture.cleanup?.();
    }
  });
}

async function codeOf(promise: Promise<unknown>): Promise<KilnErrorCode | "resolved" | "not a KilnError"> {
  try {
    await promise;
    return "resolved";
  } catch (error) {
    return KilnError.is(error) ? error.code : "not a KilnError";
  }
}

function checkSample(expect: ConformanceRunner["expect"], sample: Sample | undefined, tag: Tag): void {
  expect(sample?.tag).toBe(tag.name);
  expect(["good", "uncertain", "bad"].includes(String(sample?.quality.severity))).toBe(true);
  expect(typeof sample?.quality.code).toBe("number");
  expect(Number.isFinite(sample?.timestamp)).toBe(true);
  expect(sample!.timestamp > 0).toBe(true);
}

/** Lifecycle contract: version, capabilities, connect/close, status events, calls outside a connection. */
export function plcDriverLifecycleConformance(options: PlcDriverConformanceOptions): void {
  const { expect } = options;
  define(options, "declares driverApiVersion 1, a name and its capabilities", async ({ driver }) => {
    expect(driver.driverApiVersion).toBe("1");
    expect(typeof driver.name === "string" && driver.name.length > 0).toBe(true);
    expect(typeof driver.capabilities.subscribe).toBe("boolean");
    expect(typeof driver.capabilities.browse).toBe("boolean");
    expect(typeof driver.subscribe === "function").toBe(driver.capabilities.subscribe);
    expect(typeof driver.browse === "function").toBe(driver.capabilities.browse);
    if (options.capabilities) expect(driver.capabilities).toEqual(options.capabilities);
  });

  define(options, "read before connect rejects with KILN_NOT_CONNECTED", async ({ driver, readable }) => {
    expect(await codeOf(driver.read(readable))).toBe("KILN_NOT_CONNECTED");
  });

  define(options, "connect moves status to connected and reports the change", async ({ driver }) => {
    const changes: DriverStatusChange[] = [];
    const dispose = driver.onStatusChange((change) => changes.push(change));
    await driver.connect();
    expect(driver.status).toBe("connected");
    expect(changes.at(-1)?.to).toBe("connected");
    dispose();
    const count = changes.length;
    await driver.close();
    expect(changes.length).toBe(count);
  });

  define(
    options,
    "close is idempotent and later calls reject with KILN_NOT_CONNECTED",
    async ({ driver, readable }) => {
      await driver.connect();
      await driver.close();
      await driver.close();
      expect(driver.status).toBe("closed");
      expect(await codeOf(driver.read(readable))).toBe("KILN_NOT_CONNECTED");
    },
  );
}

/** Read contract: one sample per tag, in order, in one call; bad quality for a missing address. */
export function plcDriverReadConformance(options: PlcDriverConformanceOptions): void {
  const { expect } = options;
  define(options, "read(tags) returns one sample per tag, in order", async ({ driver, readable }) => {
    await driver.connect();
    const reversed = [...readable].reverse();
    for (const tags of [readable, reversed]) {
      const samples = await driver.read(tags);
      expect(samples.length).toBe(tags.length);
      tags.forEach((tag, index) => checkSample(expect, samples[index], tag));
    }
  });

  define(options, "read of the same array again works (per-array caching is safe)", async ({ driver, readable }) => {
    await driver.connect();
    const first = await driver.read(readable);
    const second = await driver.read(readable);
    expect(second.map((sample) => sample.tag)).toEqual(first.map((sample) => sample.tag));
  });

  define(options, "read of no tags returns an empty array", async ({ driver }) => {
    await driver.connect();
    expect(await driver.read([])).toEqual([]);
  });

  define(options, "a tag at a missing address reads with quality bad, the others unaffected", async (fixture) => {
    const { driver, readable, missing } = fixture;
    if (!missing) return;
    await driver.connect();
    const samples = await driver.read([readable[0]!, missing, readable[1]!]);
    expect(samples.length).toBe(3);
    expect(samples[1]?.tag).toBe(missing.name);
    expect(samples[1]?.quality.severity).toBe("bad");
    expect(samples[0]?.quality.severity).toBe("good");
    expect(samples[2]?.quality.severity).toBe("good");
  });
}

/** Write contract: values round-trip; read-only tags are refused before any traffic. */
export function plcDriverWriteConformance(options: PlcDriverConformanceOptions): void {
  const { expect } = options;
  define(options, "write then read returns the written value", async ({ driver, writable }) => {
    await driver.connect();
    for (const { tag, value } of writable) {
      await driver.write(tag, value);
      const [sample] = await driver.read([tag]);
      if (typeof value === "number" && typeof sample?.value === "number") {
        expect(Math.abs(sample.value - value) <= Math.abs(value) * 1e-6 + 1e-9).toBe(true);
      } else {
        expect(sample?.value).toEqual(value);
      }
      expect(sample?.quality.severity).toBe("good");
    }
  });

  define(options, "write to a read-only tag rejects with KILN_TAG_NOT_WRITABLE", async ({ driver, readOnly }) => {
    await driver.connect();
    const value: TagValue = readOnly.dataType === "bool" ? true : readOnly.dataType === "string" ? "x" : 1;
    expect(await codeOf(driver.write(readOnly, value))).toBe("KILN_TAG_NOT_WRITABLE");
  });

  define(options, "write before connect rejects with KILN_NOT_CONNECTED", async ({ driver, writable }) => {
    const first = writable[0];
    if (!first) return;
    expect(await codeOf(driver.write(first.tag, first.value))).toBe("KILN_NOT_CONNECTED");
  });
}

/** Subscribe contract (only where declared): changes are delivered until disposed. */
export function plcDriverSubscribeConformance(options: PlcDriverConformanceOptions): void {
  const { expect } = options;
  const deliveryTimeoutMs = options.deliveryTimeoutMs ?? 5_000;
  define(options, "subscribe delivers a changed value, and nothing after dispose", async (fixture) => {
    const { driver, writable } = fixture;
    if (!driver.capabilities.subscribe || !driver.subscribe) return;
    const target = writable[0];
    if (!target) return;
    await driver.connect();
    const received: Sample[] = [];
    const dispose = await driver.subscribe([target.tag], { samplingIntervalMs: 50 }, (samples) =>
      received.push(...samples),
    );
    const change = fixture.change ?? ((tag: Tag, value: TagValue) => driver.write(tag, value));
    await change(target.tag, target.value);
    const delivered = await waitFor(
      () => received.some((sample) => sample.tag === target.tag.name && valuesMatch(sample.value, target.value)),
      deliveryTimeoutMs,
    );
    expect(delivered).toBe(true);
    dispose();
    const count = received.length;
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(received.length).toBe(count);
  });
}

/** Browse contract (only where declared): variables come back with a name and an address. */
export function plcDriverBrowseConformance(options: PlcDriverConformanceOptions): void {
  const { expect } = options;
  define(options, "browse lists variables with a name, an address and an access", async ({ driver }) => {
    if (!driver.capabilities.browse || !driver.browse) return;
    await driver.connect();
    const variables = await driver.browse();
    expect(Array.isArray(variables)).toBe(true);
    expect(variables.length > 0).toBe(true);
    for (const variable of variables) {
      expect(typeof variable.name === "string" && typeof variable.address === "string").toBe(true);
      expect(["read", "readwrite"].includes(variable.access)).toBe(true);
    }
  });
}

function valuesMatch(actual: unknown, expected: TagValue): boolean {
  if (typeof actual === "number" && typeof expected === "number") {
    return Math.abs(actual - expected) <= Math.abs(expected) * 1e-6 + 1e-9;
  }
  return actual === expected;
}

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (condition()) return true;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return condition();
}
