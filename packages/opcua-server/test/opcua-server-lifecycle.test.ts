import { defineTags, KilnError } from "@kiln/core";
import { AttributeIds, StatusCodes } from "node-opcua-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { OpcuaServer } from "../src/index";
import {
  connect,
  identify,
  makeTestPki,
  servedSystem,
  type ServedTestSystem,
  type TestPki,
  user,
} from "./support/opcua-fixture";

const tags = defineTags({ "chamber.pressure": { dataType: "float64" } });

let pki: TestPki;
let served: ServedTestSystem;

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({ tags, pki });
});

afterAll(async () => {
  await served?.dispose();
  await pki?.dispose();
});

/**
 * Waits until this process holds at most `ceiling` timers (the system's own
 * scan timers come and go, so one snapshot can catch one mid-period); a timer
 * the server leaked never goes away, so it still fails here.
 */
async function timersSettleAtMost(ceiling: number): Promise<number> {
  const deadline = Date.now() + 2_000;
  let timers = handles().timers;
  while (timers > ceiling && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 25));
    timers = handles().timers;
  }
  return timers;
}

/** Timers and listening sockets of this process. */
function handles(): { timers: number; servers: number } {
  const resources = process.getActiveResourcesInfo();
  return {
    timers: resources.filter((resource) => resource === "Timeout").length,
    servers: resources.filter((resource) => resource === "TCPServerWrap").length,
  };
}

describe("OpcuaServer lifecycle", () => {
  test("stop closes the sessions and the listening socket and leaves no timer; start again serves on the same port", async () => {
    const client = await connect(served.server, pki.trusted, user("vic"));
    await client.close();
    const port = served.server.port;
    await served.server.stop();
    await new Promise((resolve) => setTimeout(resolve, 50));
    const stopped = handles();
    expect(stopped.servers).toBe(0);
    await served.server.start();
    expect(served.server.port).toBe(port);
    expect(served.server.running).toBe(true);
    const again = await connect(served.server, pki.trusted, user("vic"));
    const value = await again.session.read({
      nodeId: served.server.nodeIdOf("chamber.pressure"),
      attributeId: AttributeIds.Value,
    });
    expect(value.statusCode.value).toBe(StatusCodes.Good.value);
    await again.close();
    await served.server.stop();
    await served.server.stop(); // idempotent
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await timersSettleAtMost(stopped.timers)).toBeLessThanOrEqual(stopped.timers);
    expect(handles().servers).toBe(0);
    await served.server.start();
  });

  test("a port already in use fails start with KILN_LIFECYCLE, and the server holds nothing", async () => {
    if (!served.server.running) await served.server.start(); // independent of the test above
    const second = new OpcuaServer(served.system, {
      port: served.server.port,
      host: "127.0.0.1",
      pki: { dir: pki.serverDir },
      identify,
    });
    const error: unknown = await second.start().catch((reason: unknown) => reason);
    expect(KilnError.is(error, "KILN_LIFECYCLE")).toBe(true);
    expect(second.running).toBe(false);
    await second.stop();
  });
});
