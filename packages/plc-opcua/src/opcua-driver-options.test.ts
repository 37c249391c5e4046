import { describe, expect, test } from "vitest";
import { OpcuaDriver } from "./opcua-driver";
import { opcuaDriverOptionsSchema } from "./opcua-driver-options";

describe("opcuaDriverOptionsSchema", () => {
  test("is secure by default and always yields a complete connection strategy", () => {
    const options = opcuaDriverOptionsSchema.parse({ endpointUrl: "opc.tcp://plc:4840" });
    expect(options.security).toEqual({ mode: "SignAndEncrypt", policy: "Basic256Sha256" });
    expect(options.identity).toEqual({ type: "anonymous" });
    expect(options.pki).toEqual({ trustedServerCertificates: [], automaticallyAcceptUnknownCertificate: false });
    expect(options.connectionStrategy).toEqual({
      maxRetry: 2,
      initialDelayMs: 1_000,
      maxDelayMs: 20_000,
      randomisationFactor: 0.1,
    });
    const partial = opcuaDriverOptionsSchema.parse({
      endpointUrl: "opc.tcp://plc:4840",
      connectionStrategy: { maxDelayMs: 5_000 },
    });
    expect(partial.connectionStrategy).toEqual({
      maxRetry: 2,
      initialDelayMs: 1_000,
      maxDelayMs: 5_000,
      randomisationFactor: 0.1,
    });
  });

  test.each([
    [{ endpointUrl: "opc.tcp://plc:4840", identity: { type: "username", userName: "" } }, "identity.userName"],
    [{ endpointUrl: "opc.tcp://plc:4840", security: { policy: "Basic128Rsa15" } }, "security.policy"],
    [{ endpointUrl: "opc.tcp://plc:4840", timeouts: { requestMs: 0 } }, "timeouts.requestMs"],
    // Past Node's timer limit a keep-alive timer fires at once: a hot loop of reads (review 13j L2).
    [{ endpointUrl: "opc.tcp://plc:4840", timeouts: { keepAliveMs: 1e12 } }, "timeouts.keepAliveMs"],
    [{ endpointUrl: "opc.tcp://plc:4840", timeouts: { requestMs: 3_600_001 } }, "timeouts.requestMs"],
    [
      { endpointUrl: "opc.tcp://plc:4840", connectionStrategy: { maxDelayMs: 2 ** 31 } },
      "connectionStrategy.maxDelayMs",
    ],
    [{ endpointUrl: "opc.tcp://plc:4840", monitoredItemRetry: { maxDelayMs: 1e10 } }, "monitoredItemRetry.maxDelayMs"],
    [
      { endpointUrl: "opc.tcp://plc:4840", connectionStrategy: { initialDelayMs: 5_000, maxDelayMs: 1_000 } },
      "connectionStrategy.maxDelayMs",
    ],
    // Equal delays: node-opcua's backoff throws ("The maximal backoff delay must be greater than the initial").
    [
      { endpointUrl: "opc.tcp://plc:4840", connectionStrategy: { initialDelayMs: 1_000, maxDelayMs: 1_000 } },
      "connectionStrategy.maxDelayMs",
    ],
    // The default initialDelayMs (1000) against a given maxDelayMs.
    [{ endpointUrl: "opc.tcp://plc:4840", connectionStrategy: { maxDelayMs: 1_000 } }, "connectionStrategy.maxDelayMs"],
    [{ endpointUrl: "opc.tcp://plc:4840", limits: { maxNodesPerRead: -1 } }, "limits.maxNodesPerRead"],
    [{ endpointUrl: "opc.tcp://plc:4840", logger: console.log }, "logger"],
    [{ endpointUrl: "opc.tcp://plc:4840", clock: { now: () => 0 } }, "clock"],
    [{ endpointUrl: "opc.tcp://plc:4840", random: 0.5 }, "random"],
    [{ endpointUrl: "opc.tcp://plc:4840", colour: "red" }, ""],
    [{ endpointUrl: "tcp://plc:4840" }, "endpointUrl"],
    // adv13 (fresh review) LOW-1: a port out of 1..65535 threw a raw TypeError from new URL.
    [{ endpointUrl: "opc.tcp://plc:99999" }, "endpointUrl"],
    [{ endpointUrl: "opc.tcp://plc:0" }, "endpointUrl"],
    [{ endpointUrl: "opc.tcp://pl%zzc:4840" }, "endpointUrl"],
    [
      { endpointUrl: "opc.tcp://plc:4840", subscriptions: { maxPublishingIntervalMs: 2_000, keepAliveMs: 5_000 } },
      "subscriptions.keepAliveMs",
    ],
    [
      { endpointUrl: "opc.tcp://plc:4840", timeouts: { sessionMs: 3_000 }, subscriptions: { keepAliveMs: 5_000 } },
      "subscriptions.keepAliveMs",
    ],
  ])("rejects %j at %s", (input, path) => {
    const result = opcuaDriverOptionsSchema.safeParse(input);
    expect(result.success).toBe(false);
    expect(result.error!.issues.map((issue) => issue.path.join("."))).toContain(path);
  });

  test("accepts durations up to one hour (the driver bound), the limit itself included", () => {
    const options = opcuaDriverOptionsSchema.parse({
      endpointUrl: "opc.tcp://plc:4840",
      timeouts: { connectMs: 3_600_000, requestMs: 3_600_000, sessionMs: 3_600_000, keepAliveMs: 3_600_000 },
      connectionStrategy: { initialDelayMs: 3_599_999, maxDelayMs: 3_600_000 },
    });
    expect(options.timeouts.keepAliveMs).toBe(3_600_000);
    expect(options.connectionStrategy.maxDelayMs).toBe(3_600_000);
  });

  test("connectionStrategy: maxDelayMs just above initialDelayMs is a valid strategy", () => {
    // The rule is node-opcua's: its backoff strategy (the `backoff` package) throws unless
    // maxDelay > initialDelay, inside connect() and its reconnect loop.
    const options = opcuaDriverOptionsSchema.parse({
      endpointUrl: "opc.tcp://plc:4840",
      connectionStrategy: { initialDelayMs: 1_000, maxDelayMs: 1_001 },
    });
    expect(options.connectionStrategy).toMatchObject({ initialDelayMs: 1_000, maxDelayMs: 1_001 });
  });

  test("the driver refuses maxDelayMs equal to initialDelayMs with KILN_VALIDATION naming the field, before connecting", () => {
    let error: unknown;
    try {
      new OpcuaDriver({
        endpointUrl: "opc.tcp://127.0.0.1:1",
        connectionStrategy: { initialDelayMs: 500, maxDelayMs: 500 },
      });
    } catch (caught) {
      error = caught;
    }
    expect(error).toMatchObject({ code: "KILN_VALIDATION" });
    expect(JSON.stringify((error as { details?: unknown }).details)).toContain("connectionStrategy.maxDelayMs");
  });

  test("the driver refuses a port out of 1..65535 with KILN_VALIDATION at endpointUrl, not a TypeError (adv13 LOW-1)", () => {
    for (const endpointUrl of ["opc.tcp://h:99999", "opc.tcp://h:65536"]) {
      let error: unknown;
      try {
        new OpcuaDriver({ endpointUrl });
      } catch (caught) {
        error = caught;
      }
      expect(error).toMatchObject({ code: "KILN_VALIDATION", details: { issues: [{ path: "endpointUrl" }] } });
      expect((error as Error).message).toMatch(/port .*1.*65535/);
    }
    expect(() => new OpcuaDriver({ endpointUrl: "opc.tcp://h:65535" })).not.toThrow();
  });

  test("validation messages never echo a password", () => {
    const result = opcuaDriverOptionsSchema.safeParse({
      endpointUrl: "opc.tcp://plc:4840",
      identity: { type: "username", userName: "", password: "topsecret-xyz" },
    });
    expect(JSON.stringify(result.error!.issues)).not.toContain("topsecret-xyz");
  });

  test("accepts a Clock and a random source as given (tests inject them for determinism)", () => {
    const clock = { now: () => 0, setTimeout, clearTimeout, sleep: async () => undefined };
    const random = () => 0.25;
    const options = opcuaDriverOptionsSchema.parse({ endpointUrl: "opc.tcp://plc:4840", clock, random });
    expect(options.clock).toBe(clock);
    expect(options.random).toBe(random);
  });
});
