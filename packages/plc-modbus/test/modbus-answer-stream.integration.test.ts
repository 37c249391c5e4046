import { describe, expect, it } from "vitest";
import { defineTags, KilnError } from "@kiln/core";
import { driverFor, gateway, pause, readTags, scan, tags, TIMEOUT_MS, wrongGood } from "./answer-stream-harness";

// The answer stream behind a transparent TCP-to-RTU gateway (adv12s): the gateway stamps whatever answer comes
// off its serial line with the MBAP header of the newest request, so transaction ids prove nothing and time alone
// cannot prove that an answer is the one its request is waiting for. After any anomaly the driver sends a fence (a
// read of a shape no answer on its way has) and trusts nothing before the fence's own answer: the serial line
// answers in order, so once it has come no older answer can come any more. Every register's value names its own
// address (`1000 * unit + address`), so a shifted answer shows as a wrong value.

describe("the serial line outlives the TCP connection (adv12s F2, HIGH)", () => {
  it("an answer still on the line when the connection dropped is not taken on the next connection", async () => {
    // Request 5 (HR20) is answered only once the next connection sends its first request (a read of the same
    // shape), just before that one's own answer; the gateway drops the TCP connection 100 ms after it came.
    const line = await gateway({
      holdUntilReconnect: (request) => request.index === 5,
      dropConnectionAfterMs: (request) => (request.index === 5 ? 100 : undefined),
    });
    const { driver, changes } = await driverFor(line.port);
    const { wrong, good } = await scan(driver, 40, { gapMs: 10 });
    expect(line.requests.map((request) => request.connection)).toContain(1);
    expect(wrong).toEqual([]);
    expect(changes.some((change) => !change.aligned)).toBe(true);
    expect(good).toBeGreaterThan(60);
  }, 15_000);

  it("sibling: a request that timed out before the connection dropped is still owed on the next connection", async () => {
    // Request 5 (HR10) times out, then the gateway drops the connection; its answer comes on the next one.
    const line = await gateway({
      holdUntilReconnect: (request) => request.index === 5,
      dropConnectionAfterMs: (request) => (request.index === 5 ? TIMEOUT_MS + 60 : undefined),
    });
    const { driver } = await driverFor(line.port);
    const { wrong } = await scan(driver, 40, { gapMs: 10 });
    expect(line.requests.map((request) => request.connection)).toContain(1);
    expect(wrong).toEqual([]);
  }, 15_000);
});

describe("a duplicate answer (adv12s F3, MEDIUM)", () => {
  it("a duplicate that comes while no request waits is reported, and the next read is fenced first", async () => {
    // Every 7th answer is sent twice, the copy 40 ms later: between scans (60 ms apart), with nothing asked.
    const line = await gateway({ duplicateAfterMs: (request) => (request.index % 7 === 3 ? 40 : undefined) });
    const { driver, changes, health } = await driverFor(line.port);
    const { wrong, good, total } = await scan(driver, 12, { gapMs: 60 });
    const last = await driver.read(readTags);
    expect(wrong).toEqual([]);
    expect(wrongGood(last)).toEqual([]);
    const lost = changes.filter((change) => !change.aligned);
    expect(lost.length).toBeGreaterThan(0);
    expect(lost[0]!.reason).toMatch(/no request was waiting for/);
    // Health named it while it lasted, and a fence (a read of 2 registers) proved the stream aligned again.
    expect(health).toContain("answer stream:offline");
    expect(line.requests.some((request) => request.functionCode <= 4 && request.value === 2)).toBe(true);
    expect(driver.answerStream).toMatchObject({ aligned: true });
    expect(good).toBeGreaterThan(total / 2);
  }, 15_000);

  it("sibling: a duplicate taken by the next read of its shape is detected after the fact, never shifts the next scan", async () => {
    // The copy comes 1 ms after the answer, while the next request of the same shape waits: it takes the copy
    // (undetectable: an answer of its shape with its id), the answers after it shift until the scan's end, where
    // the last one comes with nothing asked. From then until a fence's own answer nothing is trusted.
    const line = await gateway({
      deviceMs: () => 4,
      duplicateAfterMs: (request) => (request.index === 9 ? 1 : undefined),
    });
    const { driver, changes } = await driverFor(line.port);
    const scans: string[][] = [];
    for (let round = 0; round < 8; round++) {
      scans.push(wrongGood(await driver.read(readTags)));
      await pause(60);
    }
    // Only the scan the copy came in can hold a wrong value; it was reported.
    const wrongScans = scans.flatMap((wrong, index) => (wrong.length > 0 ? [index] : []));
    expect(wrongScans.length).toBeLessThanOrEqual(1);
    expect(changes.some((change) => !change.aligned && /no request was waiting for/.test(change.reason))).toBe(true);
    expect(driver.answerStream.aligned).toBe(true);
  }, 15_000);
});

describe("a write refused before it was sent says so (adv12s F5, LOW)", () => {
  it("a write whose fence gets no answer fails with details.sent false and never reaches the device", async () => {
    // Every request to unit 1 after the first read is silent: the read times out, the write's fence too.
    const line = await gateway({ deviceMs: (request) => (request.index === 0 ? 2 : "silent") });
    const { driver } = await driverFor(line.port);
    await driver.read([tags.get("a")]);
    await driver.read([tags.get("b")]);
    const setpoint = defineTags({ sp: { dataType: "uint16", access: "readwrite", address: "HR50" } });
    const error = await driver.write(setpoint.get("sp"), 7).catch((caught: unknown) => caught);
    expect(KilnError.is(error)).toBe(true);
    expect((error as KilnError).details.sent).toBe(false);
    expect(line.writes).toEqual([]);
  }, 15_000);

  it("sibling: a write that went out and got no answer says details.sent true (it may have taken effect)", async () => {
    const line = await gateway({ deviceMs: (request) => (request.functionCode === 6 ? "silent" : 2) });
    const { driver } = await driverFor(line.port);
    const setpoint = defineTags({ sp: { dataType: "uint16", access: "readwrite", address: "HR50" } });
    const error = await driver.write(setpoint.get("sp"), 7).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: "KILN_TIMEOUT", details: { sent: true } });
    expect(line.requests.filter((request) => request.functionCode === 6)).toHaveLength(1);
  }, 15_000);
});
