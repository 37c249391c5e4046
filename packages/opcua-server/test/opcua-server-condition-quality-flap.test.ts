import { defineTags } from "@kiln/core";
import { AttributeIds, constructEventFilter, DataType, StatusCodes, TimestampsToReturn } from "node-opcua-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  connect,
  makeTestPki,
  servedSystem,
  type ServedTestSystem,
  type TestPki,
  user,
  waitFor,
} from "./support/opcua-fixture";

/**
 * A tag whose quality flapped every 60 ms made 44 condition events in 3 s for one active alarm,
 * each with a new EventId, so an operator's Acknowledge naming the event the HMI showed answered
 * BadEventIdUnknown again and again. Quality-only events are held to one per second per condition
 * (the latest Quality sent at the interval's end), and an Acknowledge naming any event of the
 * current unacknowledged occurrence is accepted (Part 9, 5.7.3).
 */

const tags = defineTags({ "p.x": { dataType: "float64" } });

let pki: TestPki;
let served: ServedTestSystem;
let olga: Awaited<ReturnType<typeof connect>>;

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({
    tags,
    pki,
    sources: { "p.x": () => 9 },
    system: {
      alarms: [
        { tag: "p.x", kind: "HI", setpoint: 5, deadband: 0.1, priority: 2, message: "hi" },
        { tag: "p.x", kind: "LO", setpoint: 1, deadband: 0.1, priority: 2, message: "lo" },
      ],
    },
  });
  olga = await connect(served.server, pki.trusted, user("olga"));
}, 60_000);

afterAll(async () => {
  await olga?.close();
  await served?.dispose();
  await pki?.dispose();
});

const condition = () => `ns=${served.server.namespaceIndex};s=@Alarm.p.x:HI`;
const acknowledge = async (eventId: Buffer, objectId = condition()) =>
  (
    await olga.session.call({
      objectId,
      methodId: `${condition()}|Acknowledge`,
      inputArguments: [
        { dataType: DataType.ByteString, value: eventId },
        { dataType: DataType.LocalizedText, value: { text: "seen" } },
      ],
    })
  ).statusCode;

describe("a condition whose tag's quality flaps", () => {
  test("events are held to about one per second, and the first event's EventId still acknowledges the occurrence", async () => {
    await waitFor(
      () => served.system.listAlarms().find((alarm) => alarm.id === "p.x:HI")?.state.name === "unacknowledged",
      "the alarm to be raised",
    );
    const subscription = await olga.session.createSubscription2({
      requestedPublishingInterval: 100,
      requestedLifetimeCount: 600,
      requestedMaxKeepAliveCount: 10,
      publishingEnabled: true,
    });
    const item = await subscription.monitor(
      { nodeId: "ns=0;i=2253", attributeId: AttributeIds.EventNotifier },
      { samplingInterval: 0, queueSize: 1000, filter: constructEventFilter(["EventId", "SourceName", "Quality"]) },
      TimestampsToReturn.Neither,
    );
    const eventIds: Buffer[] = [];
    item.on("changed", (fields: unknown) => eventIds.push((fields as Array<{ value: Buffer }>)[0]!.value));
    const faults = served.plc.faults.badQuality;
    let flips = 0;
    const flap = setInterval(() => {
      flips += 1;
      if (faults.has("p.x")) faults.delete("p.x");
      else faults.add("p.x");
    }, 60);
    try {
      await new Promise((resolve) => setTimeout(resolve, 3_000));
    } finally {
      clearInterval(flap);
      faults.delete("p.x");
    }
    await new Promise((resolve) => setTimeout(resolve, 1_500)); // the held-back event, if any
    expect(flips).toBeGreaterThan(20);
    // Held to one per second (+ the one at once, + the last held back), not one per flip.
    expect(eventIds.length).toBeGreaterThan(1);
    expect(eventIds.length).toBeLessThanOrEqual(7);
    // An EventId of this condition never reported: refused.
    expect(await acknowledge(Buffer.from("not-an-event-id"))).toBe(StatusCodes.BadEventIdUnknown);
    // The first event of the occurrence (several events older than the last) acknowledges it.
    expect(await acknowledge(eventIds[0]!)).toBe(StatusCodes.Good);
    await waitFor(
      () => served.system.listAlarms().find((alarm) => alarm.id === "p.x:HI")?.state.name === "acknowledged",
      "the acknowledgement",
    );
    // The occurrence is acknowledged: its EventIds acknowledge nothing more.
    expect(await acknowledge(eventIds.at(-1)!)).not.toBe(StatusCodes.Good);
    await subscription.terminate();
  }, 30_000);
});

describe("a condition's own Methods", () => {
  test("HI's Acknowledge or Disable called with LO as the object answers BadMethodInvalid and leaves LO as it was", async () => {
    const lo = `ns=${served.server.namespaceIndex};s=@Alarm.p.x:LO`;
    const state = () => served.system.listAlarms().find((alarm) => alarm.id === "p.x:LO")?.state.name;
    const before = state();
    expect(await acknowledge(Buffer.from("any"), lo)).toBe(StatusCodes.BadMethodInvalid);
    const admin = await connect(served.server, pki.trusted, user("ada"));
    try {
      const disabled = await admin.session.call({
        objectId: lo,
        methodId: `${condition()}|Disable`,
        inputArguments: [],
      });
      expect(disabled.statusCode).toBe(StatusCodes.BadMethodInvalid);
    } finally {
      await admin.close();
    }
    expect(state()).toBe(before);
    expect(state()).not.toBe("out-of-service");
  }, 30_000);
});
