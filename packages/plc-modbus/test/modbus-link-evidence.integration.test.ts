import { afterEach, describe, expect, it } from "vitest";
import { defineTags } from "@kiln/core";
import { ModbusDriver } from "../src/index";
import { startRawTcpDevice, type RawAnswer } from "./raw-tcp-device";

// ADR 0041, amendment fix12s (adv12s M1). The link was declared lost after three timeouts in a row "with no answer
// from any unit" while it demonstrably answered: on TCP a fence's own answer and a late answer nobody took counted
// for no unit. Any well-formed answer on the connection now shows that the link answers.

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const tags = defineTags({
  ir0: { dataType: "uint16", address: "IR0@1" },
  hr40: { dataType: "uint16", address: "HR40@1" },
  a: { dataType: "uint16", address: "HR20@2" },
  b: { dataType: "float64", address: "HR0@2" },
});

async function start(answer: (request: { unitId: number; functionCode: number; address: number }) => RawAnswer) {
  const device = await startRawTcpDevice(answer);
  cleanups.push(() => device.stop());
  const driver = new ModbusDriver({
    transport: { kind: "tcp", host: "127.0.0.1", port: device.port },
    requestTimeoutMs: 200,
    planner: { maxGap: 0 },
    reconnect: { initialDelayMs: 20, jitter: 0 },
  });
  cleanups.push(() => driver.close());
  const lost: string[] = [];
  driver.onStatusChange((change) => {
    if (change.to === "reconnecting") lost.push(change.reason ?? "");
  });
  await driver.connect();
  return { driver, lost };
}

describe("the link is lost only when nothing answers on it (adv12s M1)", () => {
  it("a dead unit and one slow answer beside fences that answer: the link is not declared lost", async () => {
    let slowOnce = true;
    const { driver, lost } = await start((request) => {
      if (request.unitId === 2) return { kind: "silent" };
      if (request.functionCode === 3 && request.address === 40 && slowOnce) {
        slowOnce = false;
        return { kind: "normal", delayMs: 300 };
      }
      return { kind: "normal", delayMs: 1 };
    });
    await driver.read([tags.get("ir0")]);
    await driver.read([tags.get("hr40")]); // times out; its answer comes late, nobody takes it
    await driver.read([tags.get("a")]); // unit 2: times out
    await driver.read([tags.get("b")]); // unit 2: times out (a fence answered in between)
    await pause(250);
    await driver.read([tags.get("b")]);
    await pause(300);
    // Before: "3 requests in a row timed out with no answer from any unit", a reconnect.
    expect(lost).toEqual([]);
  }, 15_000);

  it("sibling: when nothing answers any more (fences included), the link is still declared lost", async () => {
    let silent = false;
    const { driver, lost } = await start(() => (silent ? { kind: "silent" } : { kind: "normal", delayMs: 1 }));
    await driver.read([tags.get("ir0")]);
    silent = true;
    for (let attempt = 0; attempt < 6 && lost.length === 0; attempt++) {
      await driver.read([tags.get("hr40")]).catch(() => undefined);
      await pause(50);
    }
    expect(lost).toEqual([expect.stringMatching(/in a row timed out/)]);
  }, 15_000);
});
