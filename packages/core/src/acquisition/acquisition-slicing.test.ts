import { expect, test } from "vitest";
import { guardDriver } from "../compose/port-policies";
import { CurrentValueTable } from "../cvt/current-value-table";
import type { Sample } from "../domain/sample";
import { defineTags } from "../domain/tags";
import type { KilnEvents } from "../events/catalogue";
import { EventBus } from "../events/event-bus";
import { SimulatedClock } from "../memory/simulated-clock";
import { SimulatedPlc } from "../memory/simulated-plc";
import { Acquisition } from "./acquisition";

const TAGS = 2_500;
const tags = defineTags(
  Object.fromEntries(
    Array.from({ length: TAGS }, (_, index) => [
      `line.tag${index}`,
      { dataType: "float64" as const, scanGroup: "big" },
    ]),
  ),
);

function setup(prepare?: (plc: SimulatedPlc) => void) {
  const clock = new SimulatedClock({ start: Date.UTC(2026, 10, 30) });
  const plc = new SimulatedPlc({
    tags,
    clock,
    sources: Object.fromEntries(tags.list().map((tag) => [tag.name, { kind: "counter" as const, start: 1 }])),
  });
  prepare?.(plc);
  const cvt = new CurrentValueTable({ tags: tags.list() });
  const bus = new EventBus<KilnEvents>({ now: () => clock.now() });
  const acquisition = new Acquisition({
    driver: guardDriver(plc, { timeoutMs: 1_000, breaker: { failureThreshold: 3, recoveryTimeMs: 1_000 } }, { clock }),
    tags: tags.list(),
    groups: { big: { periodMs: 1_000, mode: "poll", staleAfterPeriods: 3 } },
    cvt,
    clock,
    bus,
    policy: { reconnect: { initialDelayMs: 100, maxDelayMs: 1_000, random: () => 0.5 } },
    sliceSize: 1_000,
  });
  return { clock, plc, cvt, acquisition };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

async function until(condition: () => boolean): Promise<void> {
  for (let step = 0; step < 1_000 && !condition(); step++) await turn();
  expect(condition()).toBe(true);
}

test("a large scan goes into the table a slice at a time, in order, and other work runs between the slices", async () => {
  const { clock, cvt, acquisition } = setup();
  const log: string[] = [];
  const update = cvt.update.bind(cvt);
  cvt.update = (samples, receivedAt) => {
    if (samples.length > 0) log.push(`update ${samples[0]!.tag}..${samples.at(-1)!.tag} (${samples.length})`);
    update(samples, receivedAt);
  };
  let ticking = true;
  const tick = (): void => {
    if (log.at(-1) !== "tick") log.push("tick");
    if (ticking) setImmediate(tick);
  };
  await acquisition.start();
  setImmediate(tick);
  await clock.advance(0);
  await until(() => acquisition.health().groups[0]!.cycles >= 1 && cvt.size === TAGS);
  ticking = false;
  const updates = log.filter((entry) => entry !== "tick");
  expect(updates).toEqual([
    "update line.tag0..line.tag999 (1000)",
    "update line.tag1000..line.tag1999 (1000)",
    "update line.tag2000..line.tag2499 (500)",
  ]);
  // The event loop turned between slices: each update is followed by a tick before the next.
  const firstUpdate = log.indexOf(updates[0]!);
  expect(log.slice(firstUpdate, firstUpdate + 5)).toEqual([updates[0], "tick", updates[1], "tick", updates[2]]);
  expect(cvt.value("line.tag2499")).toBe(1);
  await acquisition.stop();
});

test("a link lost in the middle of a sliced scan: the values read before the loss go in first, then every tag turns uncertain", async () => {
  let drop: (() => void) | undefined;
  const { clock, plc, cvt, acquisition } = setup();
  const seen = new Map<string, string[]>();
  cvt.observeAll((change) => {
    const list = seen.get(change.sample.tag) ?? [];
    list.push(change.sample.quality.severity);
    seen.set(change.sample.tag, list);
    // The first slice is in: the connection drops while the rest of the scan is queued.
    if (change.sample.tag === "line.tag999" && drop) {
      const act = drop;
      drop = undefined;
      setImmediate(act);
    }
  });
  await acquisition.start();
  drop = () => plc.dropConnection();
  await clock.advance(0);
  await until(() => acquisition.link === "offline");
  for (const tag of tags.list()) expect(seen.get(tag.name)).toEqual(["good", "uncertain"]);
  const last: Sample | undefined = cvt.get("line.tag2499");
  expect(last?.quality.severity).toBe("uncertain");
  expect(last?.value).toBe(1);
  await acquisition.stop();
});
