import { accessSync, constants, existsSync } from "node:fs";
import { mkdtemp, appendFile, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { GOOD, quality } from "../domain/quality";
import type { Sample } from "../domain/sample";
import { JOURNAL_FILE_HEADER_BYTES, RecordJournal } from "../journal/record-journal";
import { SampleJournal, SPOOL_RECORD_TARGET_BYTES, type SampleJournalSkip } from "./sample-journal";

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
    expect(recovery).toEqual({ records: 2, samples: 5, skippedRecords: 0, skippedBytes: 0, discardedBytes: 0 });
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
    // Only the file header is left.
    expect((await stat(path)).size).toBe(JOURNAL_FILE_HEADER_BYTES);
    await journal.close();
  });

  test("every value a sample may hold reads back equal, across reopen", async () => {
    const path = join(directory, "values.journal");
    const values: Sample["value"][] = [
      NaN,
      Infinity,
      -Infinity,
      -0,
      0,
      Number.MAX_VALUE,
      2n ** 64n - 1n,
      -(2n ** 63n),
      "LOT-42\u0000\u0000",
      "\ud800 lone surrogate",
      "\uffff",
      "$bigint",
      true,
      null,
    ];
    const samples = values.map((value, index) => ({ tag: "v", value, timestamp: index, quality: GOOD }));
    const first = await SampleJournal.open(path);
    await first.journal.append(samples);
    await first.journal.close();
    const { journal } = await SampleJournal.open(path);
    const back = await journal.peek();
    expect(back).toHaveLength(values.length);
    back!.forEach((sample, index) => expect(Object.is(sample.value, values[index]), String(values[index])).toBe(true));
    await journal.close();
  });

  test("a torn tail (crash mid-write) is cut off and every earlier record kept", async () => {
    const path = join(directory, "samples.journal");
    const { journal } = await SampleJournal.open(path);
    await journal.append(batch(0, 10));
    await journal.append(batch(10, 10));
    await journal.close();
    const intact = (await stat(path)).size;
    // The start of a third record: a good header whose payload never reached the disk.
    const bytes = await readFile(path);
    await appendFile(path, bytes.subarray(0, 30));

    const reopened = await SampleJournal.open(path);
    expect(reopened.recovery).toEqual({
      records: 2,
      samples: 20,
      skippedRecords: 0,
      skippedBytes: 0,
      discardedBytes: 30,
    });
    expect((await stat(path)).size).toBe(intact);
    await reopened.journal.append(batch(20, 1));
    expect(await drain(reopened.journal)).toEqual(Array.from({ length: 21 }, (_, index) => index));
    await reopened.journal.close();
  });

  test("a corrupt record between good ones is skipped and counted; the records after it are kept", async () => {
    const path = join(directory, "samples.journal");
    const { journal } = await SampleJournal.open(path);
    await journal.append(batch(0, 2));
    await journal.append(batch(2, 2));
    await journal.append(batch(4, 2));
    await journal.close();
    const bytes = await readFile(path);
    const third = bytes.lastIndexOf(Buffer.from("KJR1".split("").reverse().join(""), "latin1"));
    bytes[third - 3] = bytes[third - 3]! ^ 0xff; // flip a byte at the end of the second payload
    await writeFile(path, bytes);
    const reopened = await SampleJournal.open(path);
    expect(reopened.recovery).toMatchObject({ records: 2, samples: 4, skippedRecords: 1, discardedBytes: 0 });
    expect(await drain(reopened.journal)).toEqual([0, 1, 4, 5]);
    await reopened.journal.close();
  });

  test("a batch too large for one record is split into records of about SPOOL_RECORD_TARGET_BYTES; every sample reads back, in order", async () => {
    const path = join(directory, "big.journal");
    // Strings of NUL escape sixfold in JSON: 20 samples of 400,000 NULs are about 48 MB of JSON.
    const nul = "\u0000".repeat(400_000);
    const samples = Array.from({ length: 20 }, (_, index) => ({
      tag: "s",
      value: nul + String(index),
      timestamp: index,
      quality: GOOD,
    }));
    const { journal } = await SampleJournal.open(path);
    await journal.append(samples);
    expect(journal.samples).toBe(20);
    expect(journal.records).toBeGreaterThanOrEqual(Math.floor((20 * 6 * 400_000) / SPOOL_RECORD_TARGET_BYTES));
    const back: Sample[] = [];
    for (let next = await journal.peek(); next; next = await journal.peek()) {
      back.push(...next);
      await journal.release();
    }
    expect(back.map((sample) => sample.value)).toEqual(samples.map((sample) => sample.value));
    await journal.close();
  });

  test("when a later record of a split batch is refused, the error says how many of the batch's first samples are durable", async () => {
    const path = join(directory, "partial.journal");
    const big = "x".repeat(SPOOL_RECORD_TARGET_BYTES / 2);
    const samples = Array.from({ length: 4 }, (_, index) => ({
      tag: "s",
      value: big,
      timestamp: index,
      quality: GOOD,
    }));
    const { journal } = await SampleJournal.open(path, { maxBytes: SPOOL_RECORD_TARGET_BYTES });
    const error = await journal.append(samples).catch((caught: unknown) => caught);
    expect(KilnError.is(error, "KILN_BUFFER_FULL")).toBe(true);
    expect((error as KilnError).details).toMatchObject({ appendedSamples: 1 });
    expect(journal.samples).toBe(1);
    await journal.close();
  });

  test("an append past maxBytes is refused with KILN_BUFFER_FULL and writes nothing", async () => {
    const path = join(directory, "small.journal");
    const { journal } = await SampleJournal.open(path, { maxBytes: 400 });
    await journal.append(batch(0, 3));
    const used = (await stat(path)).size;
    const error = await journal.append(batch(3, 10)).catch((caught: unknown) => caught);
    expect(KilnError.is(error, "KILN_BUFFER_FULL")).toBe(true);
    expect((await stat(path)).size).toBe(used);
    expect(journal.samples).toBe(3);
    await journal.peek();
    await journal.release();
    await journal.append(batch(3, 3));
    expect(await drain(journal)).toEqual([3, 4, 5]);
    await journal.close();
  });

  test.skipIf(!existsSync("/dev/full") || !writable("/dev"))(
    "a full disk (ENOSPC) rejects the open with KILN_JOURNAL_FAILED: not even the file header fits (needs /dev/full, and /dev writable for its lock file)",
    async () => {
      const error = await SampleJournal.open("/dev/full").catch((caught: unknown) => caught);
      expect(KilnError.is(error, "KILN_JOURNAL_FAILED")).toBe(true);
      expect((error as KilnError).details).toMatchObject({ errno: "ENOSPC", path: "/dev/full" });
      // The lock was released: a second try meets the same full disk, not a lock.
      const again = await SampleJournal.open("/dev/full").catch((caught: unknown) => caught);
      expect((again as KilnError).details).toMatchObject({ errno: "ENOSPC" });
    },
  );
});

function writable(path: string): boolean {
  try {
    accessSync(path, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

async function drain(journal: SampleJournal): Promise<number[]> {
  const values: number[] = [];
  for (let next = await journal.peek(); next; next = await journal.peek()) {
    values.push(...next.map((sample) => sample.value as number));
    await journal.release();
  }
  return values;
}

describe("SampleJournal replay of records of the wrong shape (a valid checksum, not a batch of valid samples)", () => {
  const good = (value: number) => ({ tag: "seq", value, timestamp: value, quality: GOOD });

  async function craft(path: string, payloads: string[]): Promise<void> {
    const { journal } = await RecordJournal.open(path);
    for (const payload of payloads) await journal.append(Buffer.from(payload));
    await journal.close();
  }

  test("a record that is not an array, or whose tagged values are not ones the encoder writes, is skipped and counted; replay goes on", async () => {
    const path = join(directory, "shapes.journal");
    await craft(path, [
      JSON.stringify([good(1)]),
      JSON.stringify({ $number: "5" }),
      JSON.stringify("str"),
      JSON.stringify({ not: "an array" }),
      JSON.stringify([{ ...good(9), value: { $bigint: "x" } }]),
      JSON.stringify([{ ...good(9), value: { $number: "42" } }]),
      "not json",
      JSON.stringify([good(2)]),
    ]);
    const skips: SampleJournalSkip[] = [];
    const { journal, recovery } = await SampleJournal.open(path, { onSkip: (skip) => skips.push(skip) });
    expect(recovery).toMatchObject({ records: 8, samples: 2 });
    expect(journal.samples).toBe(2);
    expect(await drain(journal)).toEqual([1, 2]);
    expect(journal.undecodable).toBe(6);
    expect(skips).toEqual(
      Array.from({ length: 6 }, () => ({ kind: "record", count: 1, reason: "spool record is not a batch of samples" })),
    );
    expect(journal.samples).toBe(0);
    await journal.close();
  });

  test("samples that break a sample rule are left out and reported with the rule; the record's valid samples replay", async () => {
    const path = join(directory, "samples.journal");
    await craft(path, [
      JSON.stringify([null]),
      JSON.stringify([good(1), { ...good(2), timestamp: -3e12 }, good(3), { tag: "", value: 4 }]),
      JSON.stringify([good(5)]),
    ]);
    const skips: SampleJournalSkip[] = [];
    const { journal, recovery } = await SampleJournal.open(path, { onSkip: (skip) => skips.push(skip) });
    expect(recovery).toMatchObject({ records: 3, samples: 6 });
    expect(await drain(journal)).toEqual([1, 3, 5]);
    expect(journal.undecodable).toBe(0);
    expect(skips).toEqual([
      { kind: "samples", count: 1, reason: "spool sample malformed: [0] must be a sample object" },
      {
        kind: "samples",
        count: 2,
        reason: expect.stringMatching(/^spool sample malformed: \[1\]\.timestamp must be from 1900/),
      },
    ]);
    await journal.close();
  });
});
