import { KilnError } from "@kiln/core";
import type { MqttClient } from "mqtt";
import { describe, expect, test } from "vitest";
import { checkBrokerUrl, redactedBrokerUrl, subscribeChecked, withoutBrokerSecret } from "./mqtt-client";

// Adversarial review adv19p M1: every SUBACK is checked per topic filter.
describe("subscribeChecked", () => {
  const answering = (answer: () => Promise<unknown>): MqttClient =>
    ({ subscribeAsync: answer }) as unknown as MqttClient;
  const filters = { "spBv1.0/STATE/h": { qos: 1 as const }, "spBv1.0/g/#": { qos: 1 as const } };

  test("a refused filter (MQTT.js rejects with the SUBACK) throws a retryable KILN_CONNECTION_FAILED naming it and its code", async () => {
    const client = answering(() =>
      Promise.reject(Object.assign(new Error("Subscribe error: Not authorized"), { packet: { granted: [1, 0x87] } })),
    );
    const error: unknown = await subscribeChecked(client, filters, "session").catch((caught: unknown) => caught);
    expect(KilnError.is(error, "KILN_CONNECTION_FAILED")).toBe(true);
    expect((error as KilnError).retryable).toBe(true);
    expect((error as KilnError).message).toContain("spBv1.0/g/# (SUBACK 0x87 Not authorized)");
    expect((error as KilnError).message).not.toContain("spBv1.0/STATE/h (");
    expect((error as KilnError).details.refused).toEqual([{ filter: "spBv1.0/g/#", code: 0x87 }]);
  });

  test("a SUBACK with fewer codes than filters refuses every filter (0x80): none is known granted", async () => {
    const client = answering(() =>
      Promise.reject(Object.assign(new Error("Protocol error"), { packet: { granted: [1] } })),
    );
    const error = (await subscribeChecked(client, filters, "session").catch((caught: unknown) => caught)) as KilnError;
    expect(error.details.refused).toEqual([
      { filter: "spBv1.0/STATE/h", code: 0x80 },
      { filter: "spBv1.0/g/#", code: 0x80 },
    ]);
  });

  test("granted at a lower QoS: resolves naming the downgraded filter; a connection error passes through", async () => {
    const granted = answering(() =>
      Promise.resolve([
        { topic: "spBv1.0/STATE/h", qos: 1 },
        { topic: "spBv1.0/g/#", qos: 0 },
      ]),
    );
    await expect(subscribeChecked(granted, filters, "session")).resolves.toEqual(["spBv1.0/g/# (QoS 0, asked 1)"]);
    const closed = answering(() => Promise.reject(new Error("Connection closed")));
    await expect(subscribeChecked(closed, filters, "session")).rejects.toThrow("Connection closed");
  });
});

// Adversarial review 19z (second pass), L: passwords with characters `new URL()` reads as the end
// of the userinfo (or refuses) were echoed by redactedBrokerUrl and by the invalid-URL refusal.
const SHAPES: readonly { readonly url: string; readonly password: string }[] = [
  { url: "mqtt://kiln:s3cret@broker.plant:1883", password: "s3cret" },
  { url: "mqtt://kiln:pa ss-w0rd@broker.plant:1883", password: "pa ss-w0rd" },
  { url: "mqtt://kiln:pa/ss-w0rd@broker.plant:1883", password: "pa/ss-w0rd" },
  { url: "mqtt://kiln:4711/ss-w0rd@broker.plant:1883", password: "4711/ss-w0rd" },
  { url: "mqtt://kiln:pa?ss-w0rd@broker.plant:1883", password: "pa?ss-w0rd" },
  { url: "mqtt://kiln:pa#ss-w0rd@broker.plant:1883", password: "pa#ss-w0rd" },
  { url: "mqtts://kiln:p@ss/w?0#rd@broker.plant:8883/mqtt", password: "p@ss/w?0#rd" },
  { url: "ws://kiln:pa%20ss@broker.plant/mqtt", password: "pa%20ss" },
  { url: "kiln:s3cret-pw@broker.plant:1883", password: "s3cret-pw" },
  { url: "//kiln:s3cret-pw@broker.plant:1883", password: "s3cret-pw" },
];

const fragments = (password: string) => [password, ...password.split(/[ /?#@%]/).filter((part) => part.length > 2)];

describe("redactedBrokerUrl: no password shape is ever shown", () => {
  test.each(SHAPES)("$url", ({ url, password }) => {
    const shown = redactedBrokerUrl(url);
    for (const fragment of fragments(password)) expect(shown).not.toContain(fragment);
    expect(shown).not.toContain("kiln");
    expect(shown).toContain("***@broker.plant");
  });

  test("sibling: a URL without userinfo nor query is shown as it is (nothing to hide), IPv6 and paths included", () => {
    for (const url of ["mqtt://broker.plant:1883", "mqtt://[::1]:1883", "ws://broker.plant:8080/mqtt"])
      expect(redactedBrokerUrl(url)).toBe(url);
  });

  // Adversarial review 19s, item 5: a WebSocket broker may take its credential in the query string.
  test("a query string or fragment is hidden (a token there is a credential), with or without userinfo", () => {
    expect(redactedBrokerUrl("wss://broker.plant/mqtt?token=s3cret-tok")).toBe("wss://broker.plant/mqtt?***");
    expect(redactedBrokerUrl("ws://broker.plant:8080/mqtt#s3cret-tok")).toBe("ws://broker.plant:8080/mqtt#***");
    expect(redactedBrokerUrl("wss://kiln:pa?ss@broker.plant/mqtt?x=s3cret-tok")).toBe(
      "wss://***@broker.plant/mqtt?***",
    );
  });

  test("sibling: a message carrying the query or its values (raw or decoded) loses them; short values are left", () => {
    const url = "wss://broker.plant/mqtt?token=s3cret%2Ftok&v=1";
    const text = withoutBrokerSecret(
      `Unexpected server response 401 for ${url}; token s3cret/tok; query token=s3cret%2Ftok&v=1; v1`,
      url,
    );
    expect(text).not.toContain("s3cret");
    expect(text).toContain("401");
    expect(text).toContain("v1");
  });
});

describe("no error message carries the password", () => {
  test.each(SHAPES)("the refusal of $url as a broker URL (when refused) does not echo it", ({ url, password }) => {
    let shown = "";
    try {
      checkBrokerUrl("Sparkplug host options", url);
    } catch (error) {
      shown = `${(error as Error).message}\n${JSON.stringify(error)}`;
      expect(shown).toContain("brokerUrl");
    }
    for (const fragment of fragments(password)) expect(shown).not.toContain(fragment);
  });

  test("sibling: a message the MQTT client built from the URL (raw or decoded) loses the userinfo and password", () => {
    const url = "mqtt://kiln:pa%20ss/w0rd@broker.plant:1883";
    const text = withoutBrokerSecret(
      `connect ECONNREFUSED for ${url}; user kiln:pa%20ss/w0rd; password "pa ss/w0rd"`,
      url,
    );
    expect(text).not.toContain("pa%20ss/w0rd");
    expect(text).not.toContain("pa ss/w0rd");
    expect(text).toContain("ECONNREFUSED");
    expect(withoutBrokerSecret("connect ECONNREFUSED 127.0.0.1:1883", "mqtt://broker:1883")).toBe(
      "connect ECONNREFUSED 127.0.0.1:1883",
    );
  });
});

describe("a password that moves the host into the path is refused (adversarial review 19z, second pass)", () => {
  test.each([
    "mqtt://kiln:4711/ss-w0rd@broker.plant:1883",
    "mqtt://kiln:12?ss@broker.plant:1883",
    "mqtts://kiln:p@ss/w?0#rd@broker.plant:8883/mqtt",
  ])("%s: refused naming brokerUrl and percent-encoding, without the password", (url) => {
    let error: unknown;
    try {
      checkBrokerUrl("Sparkplug host options", url);
    } catch (caught) {
      error = caught;
    }
    expect((error as Error | undefined)?.message).toMatch(/brokerUrl.*percent-encoded/s);
    expect((error as Error).message).not.toContain("ss-w0rd");
  });

  test("sibling: the same credentials percent-encoded, and a WebSocket path without @, are accepted", () => {
    const password = encodeURIComponent("4711/ss@w0rd?#");
    expect(() => checkBrokerUrl("Sparkplug host options", `mqtt://kiln:${password}@broker.plant:1883`)).not.toThrow();
    expect(() => checkBrokerUrl("Sparkplug host options", "wss://broker.plant:8884/mqtt?client=kiln")).not.toThrow();
  });
});
