import { copyFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, expect, test } from "vitest";
import { JournalBacklog } from "./forward-backlog";
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
