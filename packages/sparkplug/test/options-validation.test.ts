// Bad options are refused, not accepted silently (adversarial review adv19x, fix19ac): an unknown
// key (a typo), a group named twice, an MQTT protocol version Kiln does not speak. Each is a
// KILN_VALIDATION naming the field and the rule, thrown before the constructor does anything.
import { KilnError, MemoryStore } from "@kiln/core";
import { afterEach, describe, expect, test } from "vitest";
import { SparkplugHost, type SparkplugHostOptions } from "../src/host";
import { edgeFixture, type EdgeFixture } from "./support/edge-fixture";

/** The issues of the KilnValidationError `make` throws. */
function issuesOf(make: () => unknown): { path: string; message: string }[] {
  try {
    make();
  } catch (error) {
    expect(KilnError.is(error, "KILN_VALIDATION")).toBe(true);
    return (error as { issues: { path: string; message: string }[] }).issues;
  }
  throw new Error("no error thrown");
}

describe("Sparkplug host options", () => {
  const base = (): SparkplugHostOptions => ({
    brokerUrl: "mqtt://127.0.0.1:1",
    hostId: "h",
    groups: ["g1"],
    store: new MemoryStore(),
  });

  test("an unknown key (a typo: rebirthIntervalMS) is refused naming it", () => {
    expect(issuesOf(() => new SparkplugHost({ ...base(), rebirthIntervalMS: 500 } as SparkplugHostOptions))).toEqual([
      { path: "rebirthIntervalMS", message: "is not a Sparkplug host option" },
    ]);
  });

  test("a group named twice is refused naming the second", () => {
    expect(issuesOf(() => new SparkplugHost({ ...base(), groups: ["g1", "g2", "g1"] }))).toEqual([
      { path: "groups[2]", message: expect.stringMatching(/"g1" a second time/) as string },
    ]);
  });

  test("mqtt.protocolVersion 3 is refused: Kiln speaks 4 and 5", () => {
    expect(issuesOf(() => new SparkplugHost({ ...base(), mqtt: { protocolVersion: 3 } }))).toEqual([
      { path: "mqtt.protocolVersion", message: "must be 4 (MQTT 3.1.1) or 5 (MQTT 5.0)" },
    ]);
  });

  // Nested options objects were not checked (adv19y LOW): `batching.maxBatchSise` or
  // `reconnect.initialDelay` fell back to the defaults silently.
  test("an unknown key inside a nested options object is refused by its path; a nested value that is no object too", () => {
    expect(
      issuesOf(
        () =>
          new SparkplugHost({
            ...base(),
            batching: { maxBatchSise: 10, retry: { initialDelayMs: 10, maxDelayMs: 100, multipler: 3 } },
          } as unknown as SparkplugHostOptions),
      ),
    ).toEqual([
      { path: "batching.maxBatchSise", message: "is not a Sparkplug host batching option" },
      { path: "batching.retry.multipler", message: "is not a Sparkplug host batching.retry option" },
    ]);
    expect(issuesOf(() => new SparkplugHost({ ...base(), reconnect: 5 } as unknown as SparkplugHostOptions))).toEqual([
      { path: "reconnect", message: "must be an options object" },
    ]);
  });

  test("sibling: every documented key, protocol versions 4 and 5 and distinct groups are accepted", () => {
    for (const protocolVersion of [4, 5] as const)
      expect(
        () =>
          new SparkplugHost({
            ...base(),
            groups: ["g1", "g2"],
            rebirthIntervalMs: 500,
            mqtt: { protocolVersion },
            reconnect: { initialDelayMs: 100, maxDelayMs: 1_000, multiplier: 2, jitter: "full" },
            batching: { maxBatchSize: 10, retry: { initialDelayMs: 10, maxDelayMs: 100 } },
          }),
      ).not.toThrow();
  });
});

describe("Sparkplug edge node options", () => {
  let fixture: EdgeFixture | undefined;
  afterEach(async () => {
    await fixture?.close();
    fixture = undefined;
  });

  test("an unknown key (a typo: minRebirthIntervalMS) is refused naming it, and the node is not made", async () => {
    fixture = await edgeFixture();
    expect(issuesOf(() => fixture!.newNode({ minRebirthIntervalMS: 10 } as never))).toEqual([
      { path: "minRebirthIntervalMS", message: "is not a Sparkplug edge node option" },
    ]);
  });

  test("a typo inside storeAndForward or reconnect is refused by its path, and the node is not made", async () => {
    fixture = await edgeFixture();
    expect(
      issuesOf(() =>
        fixture!.newNode({
          storeAndForward: { maxSampels: 10 },
          reconnect: { initialDelay: 100, initialDelayMs: 100, maxDelayMs: 1_000 },
        } as never),
      ),
    ).toEqual([
      { path: "reconnect.initialDelay", message: "is not a Sparkplug edge node reconnect option" },
      { path: "storeAndForward.maxSampels", message: "is not a Sparkplug edge node storeAndForward option" },
    ]);
    expect(() => fixture!.newNode({ storeAndForward: { maxSamples: 10 } })).not.toThrow();
  });

  test("mqtt.protocolVersion 3 is refused; sibling: 4 and 5 are accepted", async () => {
    fixture = await edgeFixture();
    expect(issuesOf(() => fixture!.newNode({ mqtt: { protocolVersion: 3 } }))).toEqual([
      { path: "mqtt.protocolVersion", message: "must be 4 (MQTT 3.1.1) or 5 (MQTT 5.0)" },
    ]);
    for (const protocolVersion of [4, 5] as const)
      expect(() => fixture!.newNode({ mqtt: { protocolVersion } })).not.toThrow();
  });
});
