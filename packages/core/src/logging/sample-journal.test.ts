import { mkdtemp, appendFile, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { GOOD, quality } from "../domain/quality";
import type { Sample } from "../domain/sample";
import { SampleJournal } from "./sample-journal";

let directory: string;
beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), "kiln-journal-"));
});
afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

const batch = (from: number, count: number): Sample[] =>
  Array.from({ length: count }, (_, index) => ({
    tag: "seq",
    value: from + index,
    timestamp: from + index,
    quality: GOOD,
  }));

describe("SampleJournal", () => {
  test("appends batches and reads them back in order across reopen, then truncates when released", async () => {
    const path = join(directory, "spool", "samples.journal");
    const first = await SampleJournal.open(path);
    await first.journal.append(batch(0, 3));
    await first.journal.append([
      { tag: "big", value: 2n ** 63n, timestamp: 5, quality: quality("uncertain", "stale", 0x40900000) },
      { tag: "none", value: null, timestamp: 6, quality: quality("bad") },
    ]);
    await first.journal.close();

    const { journal, recovery } = await SampleJournal.open(path);
    expect(recovery).toEqual({ records: 2, samples: 5, discardedBytes: 0 });
    expect(await journal.peek()).toEqual(batch(0, 3));
    expect(await journal.peek()).toEqual(batch(0, 3));
    await journal.release();
    const second = await journal.peek();
    expect(second?.[0]?.value).toBe(2n ** 63n);
    expect(second?.[0]?.quality).toEqual({ severity: "uncertain", code: 0x40900000, reason: "stale" });
    expect(second?.[1]?.value).toBeNull();
    await journal.release();
    expect(journal.empty).toBe(true);
    expect(await journal.peek()).toBeUndefined();
    expect((await stat(path)).size).toBe(0);
    await journal.close();
  });

  test("a torn tail (crash mid-write) is cut off and every earlier record kept", async () => {
    const path = join(directory, "samples.journal");
    const { journal } = await SampleJournal.open(path);
    await journal.append(batch(0, 10));
    await journal.append(batch(10, 10));
    await journal.close();
    const intact = (await stat(path)).size;
    // A third record whose header promises more bytes than were written.
    const header = Buffer.alloc(8);
    header.writeUInt32LE(1_000, 0);
    await appendFile(path, Buffer.concat([header, Buffer.from('[{"tag":"seq"')]));

    const reopened = await SampleJournal.open(path);
    expect(reopened.recovery).toEqual({ records: 2, samples: 20, discardedBytes: 8 + 13 });
    expect((await stat(path)).size).toBe(intact);
    await reopened.journal.append(batch(20, 1));
    const values: number[] = [];
    for (let next = await reopened.journal.peek(); next; next = await reopened.journal.peek()) {
      values.push(...next.map((sample) => sample.value as number));
      await reopened.journal.release();
    }
    expect(values).toEqual(Array.from({ length: 21 }, (_, index) => index));
    await reopened.journal.close();
  });

  test("a record whose checksum does not match ends the journal there", async () => {
    const path = join(directory, "samples.journal");
    const { journal } = await SampleJournal.open(path);
    await journal.append(batch(0, 2));
    await journal.append(batch(2, 2));
    await journal.close();
    const bytes = await readFile(path);
    bytes[bytes.length - 3] = bytes[bytes.length - 3]! ^ 0xff; // flip a byte in the second payload
    await writeFile(path, bytes);
    const reopened = await SampleJournal.open(path);
    expect(reopened.recovery.records).toBe(1);
    expect(await reopened.journal.peek()).toEqual(batch(0, 2));
    await reopened.journal.close();
  });
});
