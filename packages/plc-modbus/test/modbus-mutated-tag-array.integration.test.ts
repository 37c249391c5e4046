import { afterEach, describe, expect, it } from "vitest";
import { defineTags, type Sample, type Tag } from "@kiln/core";
import { ModbusDriver, ModbusSimulator } from "../src/index";

// The read plan and its decoders are cached per tag array (adv12 H1): an array changed in place (an element set,
// sorted, pushed to) must be planned anew, never read with the plan of its old contents (another register's value
// marked good, or a sparse result).

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const tags = defineTags({
  a: { dataType: "uint16", address: "HR0" },
  b: { dataType: "uint16", address: "HR10" },
  c: { dataType: "uint16", address: "HR20" },
  e: { dataType: "float32", address: "HR30:float32" },
});
const values = { a: 1, b: 2, c: 3, e: 4.5 };

async function connected(onSimulator?: (simulator: ModbusSimulator) => void): Promise<ModbusDriver> {
  const simulator = new ModbusSimulator({ tags, initialValues: values });
  const { host, port } = await simulator.start();
  cleanups.push(() => simulator.stop());
  onSimulator?.(simulator);
  const driver = new ModbusDriver({ transport: { kind: "tcp", host, port } });
  cleanups.push(() => driver.close());
  await driver.connect();
  return driver;
}

const tag = (name: keyof typeof values): Tag => tags.get(name)!;

/** Every sample present, in the array's order, each with its own tag's value and good. */
function expectExact(samples: Sample[], read: readonly Tag[]): void {
  expect(samples).toHaveLength(read.length);
  expect(Object.keys(samples)).toHaveLength(read.length);
  expect(samples.map((sample) => [sample.tag, sample.value, sample.quality.severity])).toEqual(
    read.map((t) => [t.name, values[t.name as keyof typeof values], "good"]),
  );
}

describe("a tag array changed in place between reads", () => {
  it("an element set to another tag reads the new tag's register", async () => {
    const driver = await connected();
    const read = [tag("a"), tag("b")];
    expectExact(await driver.read(read), read);
    read[1] = tag("c");
    expectExact(await driver.read(read), read);
  });

  it("a sorted (reordered) array reads each tag's own value in the new order", async () => {
    const driver = await connected();
    const read = [tag("a"), tag("c"), tag("b")];
    expectExact(await driver.read(read), read);
    read.sort((x, y) => y.name.localeCompare(x.name));
    expectExact(await driver.read(read), read);
  });

  it("a pushed tag gets a sample (no sparse result) and its own type's value", async () => {
    const driver = await connected();
    const read = [tag("a"), tag("b")];
    expectExact(await driver.read(read), read);
    read.push(tag("e"));
    expectExact(await driver.read(read), read);
    read.splice(0, 1);
    expectExact(await driver.read(read), read);
  });

  it("the same tag objects in new arrays, and an array changed back, read right", async () => {
    const driver = await connected();
    const first = [tag("a"), tag("b")];
    expectExact(await driver.read(first), first);
    const second = [tag("b"), tag("a")];
    expectExact(await driver.read(second), second);
    expectExact(await driver.read([tag("a"), tag("b")]), first);
    first[0] = tag("e");
    expectExact(await driver.read(first), first);
    first[0] = tag("a");
    expectExact(await driver.read(first), first);
    // The unchanged arrays still hit their plans and read right.
    expectExact(await driver.read(second), second);
  });
});

describe("a tag array changed while its read is in flight (adv12b H1)", () => {
  it("an element set during the read: the samples name the tags read when it began", async () => {
    const driver = await connected((simulator) => simulator.injectDelay(50));
    const read = [tag("a"), tag("b")];
    const pending = driver.read(read);
    read[0] = tag("c");
    expectExact(await pending, [tag("a"), tag("b")]);
  });

  it("an array emptied during the read: every sample still comes, no TypeError", async () => {
    const driver = await connected((simulator) => simulator.injectDelay(50));
    const read = [tag("a"), tag("e")];
    const pending = driver.read(read);
    read.length = 0;
    expectExact(await pending, [tag("a"), tag("e")]);
  });
});
