import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, expect, test } from "vitest";
import { JOURNAL_MARK_EVERY_RELEASES, RecordJournal } from "../src/journal/record-journal";

const here = dirname(fileURLToPath(import.meta.url));
let directory: string;
beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), "kiln-journal-crash-"));
});
afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

interface Seen {
  appended: number;
  releasing: number;
  durable: number;
}

/** Runs the writer until it has asked for `releases` releases, then SIGKILLs it mid-loop. */
function runAndKill(path: string, releases: number): Promise<Seen> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["--conditions=@kiln/source", "--import", "tsx", join(here, "journal-release-writer.ts"), path],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    const seen: Seen = { appended: -1, releasing: -1, durable: -1 };
    let stderr = "";
    let buffer = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout.on("data", (chunk: Buffer) => {
      buffer += chunk.toString();
      const lines = buffer.split("\n");
      buffer = lines.pop() ?? "";
      for (const line of lines) {
        const [kind, value] = line.split(" ") as [keyof Seen, string];
        seen[kind] = Number(value);
      }
      if (seen.releasing >= releases && !child.killed) child.kill("SIGKILL");
    });
    // "close", not "exit": every line the child wrote is read first.
    child.on("close", (_code, signal) => {
      if (signal === "SIGKILL") resolve(seen);
      else reject(new Error(`writer exited without being killed: ${stderr}`));
    });
  });
}

test("a process SIGKILLed mid-release loop: after reopen nothing unreleased is lost, nothing durably released comes back, and at most the mark window is read again", async () => {
  const path = join(directory, "records.journal");
  for (const releases of [150, 737]) {
    const seen = await runAndKill(path, releases);
    const { journal, recovery } = await RecordJournal.open(path);
    const back: number[] = [];
    await journal.scan((payload) => back.push(Number(/^seq (\d+)/.exec(payload.toString())![1])));
    await journal.close();
    // The read-back is one run of sequence numbers, in order.
    expect(back).toEqual(Array.from({ length: back.length }, (_, index) => back[0]! + index));
    const first = back[0]!;
    const last = back.at(-1)!;
    // Nothing unreleased lost: at most the records up to the one being released at the kill are
    // gone (the child prints before it asks), and every record whose append was confirmed is there.
    expect(first).toBeLessThanOrEqual(seen.releasing + 1);
    expect(last).toBeGreaterThanOrEqual(seen.appended);
    // Nothing released by a durable release comes back.
    expect(first).toBeGreaterThan(seen.durable);
    // At most the releases since the last mark: fewer than the window (here also fewer than 10).
    expect(seen.releasing - first).toBeLessThan(Math.min(10, JOURNAL_MARK_EVERY_RELEASES));
    expect(recovery).toMatchObject({ skippedRecords: 0 });
    // The next run starts where this one was killed: restart the sequence file by file.
    await rm(path);
  }
}, 60_000);
