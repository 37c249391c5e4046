import { copyFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, expect, test } from "vitest";
import { JournalBacklog, MemoryBacklog, type ForwardBacklog } from "./forward-backlog";
import { decodePayload, encodePayload } from "./payload";

let directory: string;
beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), "kiln-forward-backlog-"));
});
afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

/** One backlog record: four samples of tag `t`, timestamps `4n .. 4n+3`. */
const record = (n: number): Uint8Array =>
  encodePayload({
    metrics: [0, 1, 2, 3].map((index) => ({
      name: "t",
      datatype: "Int32" as const,
      timestamp: 4 * n + index,
      value: 4 * n + index,
      isHistorical: true,
    })),
  });

/** The first timestamp of every record a backlog opened on a copy of `path` (what a crash leaves) would send. */
async function afterCrash(path: string): Promise<number[]> {
  const copy = join(directory, `crash-${Math.random().toString(36).slice(2)}.journal`);
  await copyFile(path, copy);
  const { backlog } = await JournalBacklog.open(copy, 1 << 20);
  const firsts: number[] = [];
  for (let next = await backlog.peekAfter(); next; next = await backlog.peekAfter()) {
    firsts.push(Number(decodePayload(next.bytes).metrics[0]!.timestamp) / 4);
    await backlog.dropOldest();
  }
  await backlog.close();
  return firsts;
}

test("a crash mid-replay resends nothing already released: each replayed record's release is durable (issue 19)", async () => {
  const path = join(directory, "forward.journal");
  const { backlog } = await JournalBacklog.open(path, 1 << 20);
  for (let n = 0; n < 20; n++) await backlog.append(record(n), 4, 4 * n);
  for (let replayed = 1; replayed <= 7; replayed++) {
    const next = await backlog.peekAfter();
    expect(await backlog.releaseThrough(next!.id)).toEqual([next!.id]);
    // Before: every record replayed since the journal was last empty came back and was sent again.
    expect(await afterCrash(path)).toEqual(Array.from({ length: 20 - replayed }, (_, index) => replayed + index));
  }
  await backlog.close();
});

test("a replay window: records read in order by id, released together with one durable mark; a crash after it resends none of them", async () => {
  const path = join(directory, "forward.journal");
  const { backlog } = await JournalBacklog.open(path, 1 << 20);
  for (let n = 0; n < 20; n++) await backlog.append(record(n), 4, 4 * n);
  const window: number[] = [];
  let last: number | undefined;
  for (let index = 0; index < 5; index++) {
    const next = await backlog.peekAfter(last);
    window.push(Number(decodePayload(next!.bytes).metrics[0]!.timestamp) / 4);
    last = next!.id;
  }
  expect(window).toEqual([0, 1, 2, 3, 4]);
  // Nothing is released by reading: a crash now resends the whole window (and everything after it).
  expect(await afterCrash(path)).toHaveLength(20);
  // Sibling: the oldest record is dropped at a limit while the window is out; the rest is released.
  await backlog.dropOldest();
  expect(await backlog.releaseThrough(last!)).toHaveLength(4);
  expect(await afterCrash(path)).toEqual(Array.from({ length: 15 }, (_, index) => 5 + index));
  expect(await backlog.peekAfter()).toMatchObject({ samples: 4 });
  expect(backlog.records).toBe(15);
  await backlog.close();
});

test.each([
  ["in memory", () => Promise.resolve(new MemoryBacklog(1 << 20) as ForwardBacklog)],
  ["in a journal", async () => (await JournalBacklog.open(join(directory, "acks.journal"), 1 << 20, true)).backlog],
])(
  "%s: an acknowledged record behind one sent later under a higher number is never sent again, and released with it (ADR 0037)",
  async (_, open) => {
    const backlog: ForwardBacklog = await open();
    // A record journaled offline (0) is replayed as message 3 while live DDATA 2 and 4 go out.
    await backlog.append(record(0), 4, 0);
    backlog.markSent(backlog.nextUnsent(1)!.id, { epoch: 1, message: 3 });
    await backlog.appendSent(record(1), 4, 4, { epoch: 1, message: 2 });
    await backlog.appendSent(record(2), 4, 8, { epoch: 1, message: 4 });
    // Acknowledged through 2: record 1 only, behind record 0 (message 3): kept, but marked.
    expect(await backlog.releaseAcknowledged(1, 2)).toEqual({ records: 0, samples: 4 });
    expect(backlog.tally(1)).toEqual({ unsentRecords: 0, unsentSamples: 0, sentRecords: 2, sentSamples: 8 });
    // A new epoch (a new host): records 0 and 2 are sent again, record 1 is not.
    const resent: number[] = [];
    for (let next = backlog.nextUnsent(2); next; next = backlog.nextUnsent(2)) {
      resent.push(Number(decodePayload(next.bytes).metrics[0]!.timestamp) / 4);
      backlog.markSent(next.id, { epoch: 2, message: resent.length });
    }
    expect(resent).toEqual([0, 2]);
    expect(backlog.oldestRecord()).toMatchObject({ sent: true, acked: false });
    // Record 0 acknowledged in the new epoch: it and record 1 behind it leave together.
    expect(await backlog.releaseAcknowledged(2, 1)).toEqual({ records: 2, samples: 4 });
    expect(backlog.records).toBe(1);
    expect(backlog.samples).toBe(4);
    await backlog.close();
  },
);
