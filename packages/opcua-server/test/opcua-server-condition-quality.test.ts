import { defineTags } from "@kiln/core";
import {
  AttributeIds,
  type ClientMonitoredItem,
  type ClientSubscription,
  constructEventFilter,
  StatusCodes,
  TimestampsToReturn,
  type Variant,
} from "node-opcua-client";
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

// A condition's Quality is the StatusCode of its tag's last sample, as the tag's variable serves
// it: it follows every update of the tag, not only the alarm's transitions.

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", range: { min: 0, max: 10 } },
  "line.flow": { dataType: "float64" },
});
const FIELDS = ["ConditionId", "Quality", "ActiveState.Id", "Retain"] as const;
type ConditionEvent = Record<(typeof FIELDS)[number], unknown>;

let pki: TestPki;
let served: ServedTestSystem;
let client: Awaited<ReturnType<typeof connect>>;
let subscription: ClientSubscription;
let item: ClientMonitoredItem;
const events: ConditionEvent[] = [];

function conditionId(alarmId: string): string {
  return `ns=${served.server.namespaceIndex};s=@Alarm.${alarmId}`;
}

async function qualityOf(alarmId: string): Promise<number> {
  const browsed = await client.session.browse({ nodeId: conditionId(alarmId), browseDirection: 0, resultMask: 63 });
  const quality = browsed.references!.find((reference) => reference.browseName.name === "Quality")!.nodeId;
  const read = await client.session.read({ nodeId: quality, attributeId: AttributeIds.Value });
  return (read.value.value as { value: number }).value;
}

async function tagStatus(name: string): Promise<number> {
  const read = await client.session.read({
    nodeId: `ns=${served.server.namespaceIndex};s=${name}`,
    attributeId: AttributeIds.Value,
  });
  return read.statusCode.value;
}

async function until(alarmId: string, code: number, what: string): Promise<void> {
  const end = Date.now() + 5_000;
  while ((await qualityOf(alarmId)) !== code) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (Quality ${await qualityOf(alarmId)})`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function eventsOf(alarmId: string): ConditionEvent[] {
  return events.filter((event) => String(event.ConditionId) === conditionId(alarmId));
}

beforeAll(async () => {
  pki = await makeTestPki();
  served = await servedSystem({
    tags,
    pki,
    system: {
      alarms: [
        { tag: "chamber.pressure", kind: "HI", setpoint: 5, priority: 2 },
        { tag: "line.flow", kind: "HI", setpoint: 5, priority: 3 },
      ],
    },
  });
  client = await connect(served.server, pki.trusted, user("olga"));
  subscription = await client.session.createSubscription2({
    requestedPublishingInterval: 50,
    requestedMaxKeepAliveCount: 20,
    requestedLifetimeCount: 600,
    publishingEnabled: true,
  });
  item = await subscription.monitor(
    { nodeId: "ns=0;i=2253", attributeId: AttributeIds.EventNotifier },
    { samplingInterval: 0, queueSize: 1000, filter: constructEventFilter([...FIELDS]) },
    TimestampsToReturn.Neither,
  );
  item.on("changed", (fields: unknown) => {
    const values = fields as Variant[];
    events.push(Object.fromEntries(FIELDS.map((name, index) => [name, values[index]?.value])) as ConditionEvent);
  });
}, 60_000);

afterAll(async () => {
  await subscription?.terminate().catch(() => undefined);
  await client?.close();
  await served?.dispose();
  await pki?.dispose();
});

describe("a condition's Quality follows its tag", () => {
  test("an active alarm whose tag turns bad shows the tag's StatusCode, and one event reports it", async () => {
    served.plc.set("chamber.pressure", 7);
    await waitFor(() => eventsOf("chamber.pressure:HI").some((event) => event["ActiveState.Id"] === true), "the raise");
    expect(await qualityOf("chamber.pressure:HI")).toBe(StatusCodes.Good.value);
    served.plc.faults.badQuality.add("chamber.pressure");
    await until("chamber.pressure:HI", StatusCodes.BadDeviceFailure.value, "the bad Quality");
    expect(await tagStatus("chamber.pressure")).toBe(StatusCodes.BadDeviceFailure.value);
    await waitFor(
      () =>
        eventsOf("chamber.pressure:HI").some(
          (event) => (event.Quality as { value: number } | undefined)?.value === StatusCodes.BadDeviceFailure.value,
        ),
      "the Quality event",
    );
    // One event for the change, not one per sample.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const bad = eventsOf("chamber.pressure:HI").filter(
      (event) => (event.Quality as { value: number }).value === StatusCodes.BadDeviceFailure.value,
    );
    expect(bad).toHaveLength(1);
    served.plc.faults.badQuality.delete("chamber.pressure");
    await until("chamber.pressure:HI", StatusCodes.Good.value, "the good Quality again");
  });

  test("a condition whose first sample was bad shows Good once the tag is good (no event: not retained)", async () => {
    // line.flow's alarm stays inactive: Retain false, so its Quality changes without events.
    served.plc.faults.badQuality.add("line.flow");
    await until("line.flow:HI", StatusCodes.BadDeviceFailure.value, "the bad Quality");
    served.plc.faults.badQuality.delete("line.flow");
    await until("line.flow:HI", StatusCodes.Good.value, "the good Quality");
    expect(eventsOf("line.flow:HI")).toEqual([]);
  });

  test("after system.stop() the Quality is the variable's UncertainNoCommunicationLastUsableValue", async () => {
    await served.system.stop();
    const stale = StatusCodes.UncertainNoCommunicationLastUsableValue.value;
    await until("chamber.pressure:HI", stale, "the stale Quality");
    expect(await tagStatus("chamber.pressure")).toBe(stale);
    expect(await qualityOf("line.flow:HI")).toBe(stale);
  });
});
