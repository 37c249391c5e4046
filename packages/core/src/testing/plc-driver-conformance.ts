import { KilnError } from "../domain/errors";
import { coerceToTagType } from "../driver-kit/coerce-to-tag-type";
import { formatTagValue } from "../domain/tags";
import { group, type ConformanceRunner } from "./conformance-runner";
import type { KilnErrorCode, PlcDriver, Sample, Tag, TagValue } from "@kiln/core";
import type { DriverStatusChange, PlcDriverCapabilities } from "@kiln/core/driver-kit";

/** What a driver factory returns: a fresh, unconnected driver and the tags to exercise it with. */
export interface PlcDriverFixture {
  /** A new, not yet connected driver, isolated from every other fixture. */
  readonly driver: PlcDriver;
  /** At least two readable tags the device serves. */
  readonly readable: readonly Tag[];
  /** At least one writable tag with a value to write and read back (the value must differ from the current one). */
  readonly writable: readonly { readonly tag: Tag; readonly value: TagValue }[];
  /** A tag declared read-only. */
  readonly readOnly: Tag;
  /** A tag whose address does not exist on the device (read must give quality bad). Needed with `features.missing`. */
  readonly missing?: Tag;
  /**
   * Changes a tag's value on the device side (to prove subscriptions deliver it). When absent
   * the suite writes through the driver.
   */
  readonly change?: (tag: Tag, value: TagValue) => Promise<void>;
  /**
   * Returns a new driver, configured like `driver` but for an endpoint where nothing answers
   * (a closed port). The suite connects and closes it. Needed with `features.unreachable`.
   */
  readonly unreachable?: () => PlcDriver;
  /**
   * A write the device refuses (a read-only node declared writable, an address the device does
   * not have), and the error code the driver documents for it. Required unless `unsupported.rejectedWrite` says why not.
   */
  readonly rejectedWrite?: {
    readonly tag: Tag;
    readonly value: TagValue;
    /** @default "KILN_WRITE_REJECTED" */
    readonly code?: KilnErrorCode;
  };
  /** Drops the link from the device side (socket reset, sessions closed). Required unless `unsupported.dropConnection` says why not. */
  readonly dropConnection?: () => void | Promise<void>;
  /** Makes the device stop answering requests, so calls stay in flight. Required unless `unsupported.stall` says why not. */
  readonly stall?: () => void | Promise<void>;
  /** Releases what the fixture started (simulators, sockets). Called after each test. */
  readonly cleanup?: () => Promise<void>;
}

/**
 * The optional parts a fixture provides. Declared once at registration: the cases that need a
 * part are registered only when it is declared, and fail when the fixture then lacks it.
 */
export interface PlcDriverFixtureFeatures {
  /** The fixture gives `missing`. */
  readonly missing?: boolean;
  /** The fixture gives `unreachable`. */
  readonly unreachable?: boolean;
}

/**
 * The fault cases every driver runs unless its fixture cannot stage the fault, each with the
 * reason why not (printed when the suite is registered, so a skipped case never goes unseen).
 */
export interface PlcDriverUnsupportedFaults {
  /** Why the fixture cannot give `rejectedWrite` (a write the device refuses). */
  readonly rejectedWrite?: string;
  /** Why the fixture cannot give `dropConnection` (the device dropping the link). */
  readonly dropConnection?: string;
  /** Why the fixture cannot give `stall` (the device no longer answering). */
  readonly stall?: string;
}

/** Groups of {@link plcDriverConformance}; each can be switched off. */
export interface PlcDriverConformanceGroups {
  /** Run {@link plcDriverLifecycleConformance}. @default true */
  lifecycle?: boolean;
  /** Run {@link plcDriverReadConformance}. @default true */
  read?: boolean;
  /** Run {@link plcDriverWriteConformance}. @default true */
  write?: boolean;
  /** Run {@link plcDriverErrorConformance}. @default true */
  errors?: boolean;
  /** Run {@link plcDriverAbortConformance}. @default true */
  abort?: boolean;
  /** Run {@link plcDriverConcurrencyConformance}. @default true */
  concurrency?: boolean;
  /** Run {@link plcDriverSubscribeConformance}; only where `subscribe` is declared. @default true */
  subscribe?: boolean;
  /** Run {@link plcDriverBrowseConformance}; only where `browse` is declared. @default true */
  browse?: boolean;
}

/** Options of {@link plcDriverConformance}. */
export interface PlcDriverConformanceOptions extends ConformanceRunner {
  /** Returns a fresh fixture per test. */
  readonly factory: () => Promise<PlcDriverFixture>;
  /**
   * The capabilities the driver declares. The `subscribe` and `browse` groups are registered only
   * for declared features, and the lifecycle group checks the driver declares exactly these.
   */
  readonly capabilities: PlcDriverCapabilities;
  /** The optional fixture parts the factory provides; cases that need an undeclared part are not registered. @default none */
  readonly features?: PlcDriverFixtureFeatures;
  /**
   * The fault cases (a dropped connection, a stalled device, a refused write) run for every
   * driver; a fixture that cannot stage one names it here with the reason, and its cases are
   * left out with that reason printed. @default none: every fault case runs
   */
  readonly unsupported?: PlcDriverUnsupportedFaults;
  /** Groups to run. @default every group (subscribe/browse only where declared) */
  readonly groups?: PlcDriverConformanceGroups;
  /** Group name for the tests, e.g. the driver's name. @default "PlcDriver conformance" */
  readonly name?: string;
  /** How long to wait for subscription deliveries, in real ms. @default 5000 */
  readonly deliveryTimeoutMs?: number;
  /**
   * How long an aborted call may take to reject, and a dropped connection to be reported, in real
   * ms (polled, not slept). @default 2000
   */
  readonly promptMs?: number;
}

/**
 * The contract every `PlcDriver` must meet, as tests. Run it from your driver's test file:
 *
 * @example
 * import { test, expect, describe } from "vitest";
 * import { plcDriverConformance } from "@kiln/core/testing";
 * plcDriverConformance({
 *   test, expect, describe,
 *   capabilities: { subscribe: false, browse: false },
 *   features: { missing: true, unreachable: true },
 *   factory: async () => ({ driver: new MyDriver(...), readable, writable, readOnly, missing, unreachable: () => new MyDriver({ port: 1 }) }),
 * });
 */
export function plcDriverConformance(options: PlcDriverConformanceOptions): void {
  const declared = options.capabilities;
  const on = (name: keyof PlcDriverConformanceGroups): boolean => options.groups?.[name] ?? true;
  group(options, options.name ?? "PlcDriver conformance", (test) => {
    const scoped = { ...options, test, describe: undefined };
    if (on("lifecycle")) plcDriverLifecycleConformance(scoped);
    if (on("read")) plcDriverReadConformance(scoped);
    if (on("write")) plcDriverWriteConformance(scoped);
    if (on("errors")) plcDriverErrorConformance(scoped);
    if (on("abort")) plcDriverAbortConformance(scoped);
    if (on("concurrency")) plcDriverConcurrencyConformance(scoped);
    if (on("subscribe") && declared.subscribe) plcDriverSubscribeConformance(scoped);
    if (on("browse") && declared.browse) plcDriverBrowseConformance(scoped);
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

/**
 * Whether the fault case `key` runs: unless the fixture names it in `unsupported` with a reason,
 * which is printed (an empty reason is a mistake: `TypeError`).
 */
function supports(options: PlcDriverConformanceOptions, key: keyof PlcDriverUnsupportedFaults): boolean {
  const reason = options.unsupported?.[key];
  if (reason === undefined) return true;
  if (typeof reason !== "string" || reason.trim() === "") {
    throw new TypeError(`unsupported.${key} must say why the fixture cannot stage it`);
  }
  console.warn(`${options.name ?? "PlcDriver conformance"}: the ${key} cases are not run: ${reason}`);
  return false;
}

function feature<TKey extends keyof (PlcDriverFixtureFeatures & PlcDriverUnsupportedFaults) & keyof PlcDriverFixture>(
  fixture: PlcDriverFixture,
  key: TKey,
): NonNullable<PlcDriverFixture[TKey]> {
  const part = fixture[key];
  if (part === undefined) {
    throw new Error(`the fixture gives no ${key}: give it, or declare features/unsupported for it`);
  }
  return part as NonNullable<PlcDriverFixture[TKey]>;
}

/** A code, "resolved", or "not a KilnError: ..." — strings, so a failed assertion shows what happened. */
async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return "resolved";
  } catch (error) {
    return KilnError.is(error) ? error.code : `not a KilnError: ${String(error)}`;
  }
}

/** Like {@link codeOf}, but "still pending" when `promise` has not settled within `ms` real ms. */
async function codeWithin(promise: Promise<unknown>, ms: number): Promise<string> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const pending = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`still pending after ${ms} ms`), ms);
  });
  try {
    return await Promise.race([codeOf(promise), pending]);
  } finally {
    clearTimeout(timer);
  }
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (error: unknown) => error,
  );
}

function checkSample(expect: ConformanceRunner["expect"], sample: Sample | undefined, tag: Tag): void {
  expect(sample?.tag).toBe(tag.name);
  expect(["good", "uncertain", "bad"].includes(String(sample?.quality.severity))).toBe(true);
  expect(typeof sample?.quality.code).toBe("number");
  expect(Number.isFinite(sample?.timestamp)).toBe(true);
  expect(sample!.timestamp > 0).toBe(true);
  // A value that is not bad must be of the tag's type (never a wrong value shown as good).
  if (sample !== undefined && sample.quality.severity !== "bad") {
    const typed = sample.value !== null && coerceToTagType(sample.value, tag).ok;
    expect(
      typed ? "of the tag's type" : `${tag.dataType} tag read ${typeof sample.value} ${formatTagValue(sample.value)}`,
    ).toBe("of the tag's type");
  }
}

function valueFor(tag: Tag): TagValue {
  return tag.dataType === "bool" ? true : tag.dataType === "string" ? "x" : 1;
}

/** Lifecycle contract: version, capabilities, connect/close, status events, calls outside a connection. */
export function plcDriverLifecycleConformance(options: PlcDriverConformanceOptions): void {
  const { expect } = options;
  const promptMs = options.promptMs ?? 2_000;
  define(options, "declares driverApiVersion 1, a name and its capabilities", async ({ driver }) => {
    expect(driver.driverApiVersion).toBe("1");
    expect(typeof driver.name === "string" && driver.name.length > 0).toBe(true);
    expect(driver.capabilities).toEqual(options.capabilities);
    expect(typeof driver.subscribe === "function").toBe(driver.capabilities.subscribe);
    expect(typeof driver.browse === "function").toBe(driver.capabilities.browse);
  });

  define(options, "read before connect rejects with KILN_NOT_CONNECTED", async ({ driver, readable }) => {
    expect(await codeOf(driver.read(readable))).toBe("KILN_NOT_CONNECTED");
  });

  define(
    options,
    "every call refused before connect settles only after the event loop turned",
    async ({ driver, readable, writable }) => {
      // A caller retrying in a tight loop must not starve timers and sockets (issue 12, adv12x; adv13za M1).
      const calls: (() => Promise<unknown>)[] = [
        () => driver.read(readable),
        () => driver.write(writable[0]!.tag, writable[0]!.value),
      ];
      if (driver.capabilities.browse && driver.browse) calls.push(() => driver.browse!());
      if (driver.capabilities.subscribe && driver.subscribe)
        calls.push(() => driver.subscribe!(readable, { samplingIntervalMs: 100 }, () => undefined));
      for (const call of calls) {
        let turned = false;
        const immediate = setImmediate(() => (turned = true));
        expect(await codeOf(call())).toBe("KILN_NOT_CONNECTED");
        clearImmediate(immediate);
        expect(turned ? "the event loop turned" : "settled in microtasks only").toBe("the event loop turned");
      }
    },
  );

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
    "close is idempotent; later reads and writes reject with KILN_NOT_CONNECTED, not retryable",
    async ({ driver, readable, writable }) => {
      await driver.connect();
      await driver.close();
      await driver.close();
      expect(driver.status).toBe("closed");
      const read = await rejection(driver.read(readable));
      expect(KilnError.is(read) ? read.code : `read: ${String(read)}`).toBe("KILN_NOT_CONNECTED");
      expect(KilnError.is(read) && read.retryable).toBe(false);
      expect(writable.length > 0).toBe(true);
      expect(await codeOf(driver.write(writable[0]!.tag, writable[0]!.value))).toBe("KILN_NOT_CONNECTED");
    },
  );

  define(options, "after close no status change is reported and the status stays closed", async ({ driver }) => {
    await driver.connect();
    await driver.close();
    const changes: DriverStatusChange[] = [];
    driver.onStatusChange((change) => changes.push(change));
    // Nothing to poll for: wait a bounded while and check nothing came.
    const changed = await waitFor(() => changes.length > 0 || driver.status !== "closed", Math.min(promptMs, 200));
    expect(changed ? `status ${driver.status} after close, changes ${JSON.stringify(changes)}` : "quiet").toBe("quiet");
  });

  define(options, "a closed driver connects again (close, connect, read)", async ({ driver, readable }) => {
    await driver.connect();
    await driver.close();
    expect(await codeOf(driver.connect())).toBe("resolved");
    expect(driver.status).toBe("connected");
    expect((await driver.read(readable)).length).toBe(readable.length);
  });

  if (supports(options, "dropConnection")) {
    define(
      options,
      "a connection dropped by the device is reported as a status change; calls then succeed or fail retryably",
      async (fixture) => {
        const { driver, readable } = fixture;
        const drop = feature(fixture, "dropConnection");
        await driver.connect();
        const changes: DriverStatusChange[] = [];
        driver.onStatusChange((change) => changes.push(change));
        await drop();
        const reported = await waitFor(
          () => changes.some((change) => change.from === "connected" && change.to !== "closed"),
          promptMs,
        );
        expect(reported ? "reported" : `no status change within ${promptMs} ms (status ${driver.status})`).toBe(
          "reported",
        );
        const error = await rejection(driver.read(readable));
        expect(error === undefined || (KilnError.is(error) && error.retryable)).toBe(true);
      },
    );
  }
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

  define(
    options,
    "an array changed in place between reads, or while a read is in flight, never renames a sample (a cached plan must check the array's contents; samples name the tags as read)",
    async ({ driver, readable }) => {
      await driver.connect();
      if (readable.length < 2) return;
      const tags = [...readable];
      await driver.read(tags);
      tags.reverse();
      const reordered = await driver.read(tags);
      expect(reordered.map((sample) => sample.tag)).toEqual(tags.map((tag) => tag.name));
      const asRead = [...tags];
      const pending = driver.read(tags);
      tags.reverse();
      tags.length = 1;
      const samples = await pending;
      expect(samples.length).toBe(asRead.length);
      asRead.forEach((tag, index) => checkSample(expect, samples[index], tag));
    },
  );

  define(options, "read of no tags returns an empty array", async ({ driver }) => {
    await driver.connect();
    expect(await driver.read([])).toEqual([]);
  });

  if (options.features?.missing) {
    define(options, "a tag at a missing address reads with quality bad, the others unaffected", async (fixture) => {
      const { driver, readable } = fixture;
      const missing = feature(fixture, "missing");
      await driver.connect();
      const samples = await driver.read([readable[0]!, missing, readable[1]!]);
      expect(samples.length).toBe(3);
      expect(samples[1]?.tag).toBe(missing.name);
      expect(samples[1]?.quality.severity).toBe("bad");
      expect(samples[0]?.quality.severity).toBe("good");
      expect(samples[2]?.quality.severity).toBe("good");
    });
  }
}

/** Write contract: values round-trip; read-only tags are refused before any traffic. */
export function plcDriverWriteConformance(options: PlcDriverConformanceOptions): void {
  const { expect } = options;
  define(options, "write then read returns the written value", async ({ driver, writable }) => {
    await driver.connect();
    expect(writable.length > 0).toBe(true);
    for (const { tag, value } of writable) {
      await driver.write(tag, value);
      const [sample] = await driver.read([tag]);
      expect(valuesMatch(sample?.value, value) ? value : sample?.value).toEqual(value);
      expect(sample?.quality.severity).toBe("good");
    }
  });

  define(options, "write to a read-only tag rejects with KILN_TAG_NOT_WRITABLE", async ({ driver, readOnly }) => {
    await driver.connect();
    expect(await codeOf(driver.write(readOnly, valueFor(readOnly)))).toBe("KILN_TAG_NOT_WRITABLE");
  });

  define(options, "write before connect rejects with KILN_NOT_CONNECTED", async ({ driver, writable }) => {
    expect(writable.length > 0).toBe(true);
    expect(await codeOf(driver.write(writable[0]!.tag, writable[0]!.value))).toBe("KILN_NOT_CONNECTED");
  });
}

/** Typed errors: a failed connect and a refused write reject with the documented codes. */
export function plcDriverErrorConformance(options: PlcDriverConformanceOptions): void {
  const { expect } = options;
  if (options.features?.unreachable) {
    define(
      options,
      "connect to an unreachable endpoint rejects with a retryable KILN_CONNECTION_FAILED",
      async (fixture) => {
        const driver = feature(fixture, "unreachable")();
        try {
          const error = await rejection(driver.connect());
          expect(KilnError.is(error) ? error.code : `not a KilnError: ${String(error)}`).toBe("KILN_CONNECTION_FAILED");
          expect(KilnError.is(error) && error.retryable).toBe(true);
          expect(driver.status === "connected").toBe(false);
        } finally {
          await driver.close();
        }
      },
    );
  }

  if (supports(options, "rejectedWrite")) {
    define(
      options,
      "a write the device refuses rejects with KILN_WRITE_REJECTED (or the documented code)",
      async (fixture) => {
        const { driver } = fixture;
        const { tag, value, code = "KILN_WRITE_REJECTED" } = feature(fixture, "rejectedWrite");
        await driver.connect();
        expect(await codeOf(driver.write(tag, value))).toBe(code);
        expect(driver.status).toBe("connected");
      },
    );
  }
}

/** Abort signals: a call given an aborted signal, or aborted while in flight, rejects promptly. */
export function plcDriverAbortConformance(options: PlcDriverConformanceOptions): void {
  const { expect } = options;
  const promptMs = options.promptMs ?? 2_000;
  define(
    options,
    "connect with an already-aborted signal rejects with KILN_ABORTED and does not connect",
    async ({ driver }) => {
      expect(await codeWithin(driver.connect(AbortSignal.abort()), promptMs)).toBe("KILN_ABORTED");
      expect(driver.status === "connected").toBe(false);
    },
  );

  define(options, "connect aborted while in progress rejects promptly with KILN_ABORTED", async ({ driver }) => {
    const controller = new AbortController();
    const connecting = driver.connect(controller.signal);
    controller.abort();
    expect(await codeWithin(connecting, promptMs)).toBe("KILN_ABORTED");
    expect(driver.status === "connected").toBe(false);
  });

  define(options, "read with an already-aborted signal rejects with KILN_ABORTED", async ({ driver, readable }) => {
    await driver.connect();
    expect(await codeWithin(driver.read(readable, AbortSignal.abort()), promptMs)).toBe("KILN_ABORTED");
    expect((await driver.read(readable)).length).toBe(readable.length);
  });

  define(
    options,
    "write with an already-aborted signal rejects with KILN_ABORTED and writes nothing",
    async ({ driver, writable }) => {
      expect(writable.length > 0).toBe(true);
      const { tag, value } = writable[0]!;
      await driver.connect();
      const [before] = await driver.read([tag]);
      expect(await codeWithin(driver.write(tag, value, AbortSignal.abort()), promptMs)).toBe("KILN_ABORTED");
      const [after] = await driver.read([tag]);
      expect(after?.value).toEqual(before?.value);
    },
  );

  if (supports(options, "stall")) {
    define(options, "a write the device does not answer rejects promptly when its signal aborts", async (fixture) => {
      const { driver, writable } = fixture;
      const stall = feature(fixture, "stall");
      expect(writable.length > 0).toBe(true);
      await driver.connect();
      await stall();
      const controller = new AbortController();
      const writing = driver.write(writable[0]!.tag, writable[0]!.value, controller.signal);
      await new Promise((resolve) => setTimeout(resolve, 10));
      controller.abort();
      expect(await codeWithin(writing, promptMs)).toBe("KILN_ABORTED");
    });

    define(
      options,
      "a write sent to a device that does not answer says it may have landed (details.sent true) when its signal aborts",
      async (fixture) => {
        const { driver, writable } = fixture;
        const stall = feature(fixture, "stall");
        expect(writable.length > 0).toBe(true);
        await driver.connect();
        // Once first, so a driver that reads what it needs about the tag on its first write (an OPC
        // UA node's DataType) sends the write request itself after the stall.
        await driver.write(writable[0]!.tag, writable[0]!.value);
        await stall();
        const controller = new AbortController();
        const writing = rejection(driver.write(writable[0]!.tag, writable[0]!.value, controller.signal));
        // Time for the request to go out; the device may have taken it, its answer never comes.
        await new Promise((resolve) => setTimeout(resolve, 100));
        controller.abort();
        let timer: ReturnType<typeof setTimeout> | undefined;
        const error = await Promise.race([
          writing,
          new Promise((resolve) => (timer = setTimeout(() => resolve(`still pending after ${promptMs} ms`), promptMs))),
        ]).finally(() => clearTimeout(timer));
        // The core holds the tag's later writes behind it and audits it `:landed` (PlcDriver.write).
        expect(KilnError.is(error) ? { code: error.code, sent: error.details.sent } : String(error)).toEqual({
          code: "KILN_ABORTED",
          sent: true,
        });
      },
    );

    define(options, "a read the device does not answer rejects promptly when its signal aborts", async (fixture) => {
      const { driver, readable } = fixture;
      const stall = feature(fixture, "stall");
      await driver.connect();
      await stall();
      const controller = new AbortController();
      const reading = driver.read(readable, controller.signal);
      await new Promise((resolve) => setTimeout(resolve, 10));
      controller.abort();
      expect(await codeWithin(reading, promptMs)).toBe("KILN_ABORTED");
    });
  }
}

/** Concurrency: connect, close and read may overlap. */
export function plcDriverConcurrencyConformance(options: PlcDriverConformanceOptions): void {
  const { expect } = options;
  define(options, "concurrent connect calls share one attempt and end connected", async ({ driver }) => {
    const changes: DriverStatusChange[] = [];
    driver.onStatusChange((change) => changes.push(change));
    await Promise.all([driver.connect(), driver.connect(), driver.connect()]);
    expect(driver.status).toBe("connected");
    expect(changes.filter((change) => change.to === "connected").length).toBe(1);
    await driver.connect();
    expect(changes.filter((change) => change.to === "connected").length).toBe(1);
  });

  define(
    options,
    "close during connect wins: the driver ends closed and reads reject with KILN_NOT_CONNECTED",
    async ({ driver, readable }) => {
      const connecting = rejection(driver.connect());
      await driver.close();
      const error = await connecting;
      expect(error === undefined || KilnError.is(error)).toBe(true);
      expect(driver.status).toBe("closed");
      expect(await codeOf(driver.read(readable))).toBe("KILN_NOT_CONNECTED");
    },
  );

  define(options, "concurrent reads each return one sample per tag, in order", async ({ driver, readable }) => {
    await driver.connect();
    const orders = [readable, [...readable].reverse(), [readable[0]!]];
    const results = await Promise.all(orders.map((tags) => driver.read(tags)));
    results.forEach((samples, index) => {
      expect(samples.map((sample) => sample.tag)).toEqual(orders[index]!.map((tag) => tag.name));
    });
  });

  define(
    options,
    "close while a read is in flight settles the read; one settling after close rejects typed or carries no good sample",
    async ({ driver, readable }) => {
      await driver.connect();
      let closed = false;
      const reading = driver.read(readable).then(
        (samples) =>
          closed && samples.some((sample) => sample.quality.severity !== "bad") ? "good data after close" : "ok",
        (error: unknown) => (KilnError.is(error) ? "ok" : `not a KilnError: ${String(error)}`),
      );
      await driver.close();
      closed = true;
      expect(await reading).toBe("ok");
      expect(driver.status).toBe("closed");
    },
  );
}

/** Subscribe contract (registered only where declared): changes are delivered until disposed. */
export function plcDriverSubscribeConformance(options: PlcDriverConformanceOptions): void {
  const { expect } = options;
  const deliveryTimeoutMs = options.deliveryTimeoutMs ?? 5_000;
  define(options, "subscribe delivers a changed value, and nothing after dispose", async (fixture) => {
    const { driver, writable } = fixture;
    expect(typeof driver.subscribe).toBe("function");
    expect(writable.length > 0).toBe(true);
    const target = writable[0]!;
    await driver.connect();
    const received: Sample[] = [];
    const dispose = await driver.subscribe!([target.tag], { samplingIntervalMs: 50 }, (samples) =>
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
    // Nothing to poll for: wait a bounded while and check no delivery came.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(received.length).toBe(count);
  });
}

/** Browse contract (registered only where declared): variables come back with a name and an address. */
export function plcDriverBrowseConformance(options: PlcDriverConformanceOptions): void {
  const { expect } = options;
  define(options, "browse lists variables with a name, an address and an access", async ({ driver }) => {
    expect(typeof driver.browse).toBe("function");
    await driver.connect();
    const variables = await driver.browse!();
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

/** Polls `condition` every 10 ms for at most `timeoutMs` real ms. */
async function waitFor(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (condition()) return true;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return condition();
}
