import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { KilnError } from "../domain/errors";
import { RecordJournal } from "./record-journal";

let directory: string;
beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), "kiln-record-journal-"));
});
afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

const payload = (index: number): Buffer => Buffer.from(`record ${index} `.repeat(1 + (index % 7)));

async function readAll(journal: RecordJournal): Promise<string[]> {
  const seen: string[] = [];
  for (let next = await journal.peek(); next; next = await journal.peek()) {
    seen.push(next.toString());
    await journal.release();
  }
  return seen;
}

describe("RecordJournal", () => {
  test("one damaged byte anywhere loses at most the record that holds it; every other record is kept in order", async () => {
    const path = join(directory, "fuzz.journal");
    const { journal } = await RecordJournal.open(path);
    const written = Array.from({ length: 12 }, (_, index) => payload(index));
    for (const record of written) await journal.append(record);
    await journal.close();
    const pristine = await readFile(path);
    let seed = 7;
    const next = (): number => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31);
    for (let trial = 0; trial < 150; trial++) {
      const damaged = Buffer.from(pristine);
      const at = next() % damaged.length;
      damaged[at] = damaged[at]! ^ (1 + (next() % 255));
      await writeFile(path, damaged);
      const { journal: reopened, recovery } = await RecordJournal.open(path);
      const seen = await readAll(reopened);
      await reopened.close();
      const expected = written.map(String);
      expect(seen.length, `byte ${at}`).toBeGreaterThanOrEqual(expected.length - 1);
      expect(
        expected.filter((record) => seen.includes(record)),
        `byte ${at}`,
      ).toEqual(seen);
      if (seen.length < expected.length) {
        expect(recovery.skippedRecords + (recovery.discardedBytes > 0 ? 1 : 0), `byte ${at}`).toBe(1);
      }
    }
  });

  test("garbage between records (a stray write) is skipped and the records after it are found", async () => {
    const path = join(directory, "garbage.journal");
    const { journal } = await RecordJournal.open(path);
    await journal.append(payload(1));
    await journal.close();
    const first = await readFile(path);
    const { journal: second } = await RecordJournal.open(join(directory, "other.journal"));
    await second.append(payload(2));
    await second.close();
    const other = await readFile(join(directory, "other.journal"));
    await writeFile(path, Buffer.concat([first, Buffer.alloc(5_000, 0xab), other]));
    const { journal: reopened, recovery } = await RecordJournal.open(path);
    expect(recovery).toEqual({ records: 2, skippedRecords: 1, skippedBytes: 5_000, discardedBytes: 0 });
    expect(await readAll(reopened)).toEqual([String(payload(1)), String(payload(2))]);
    await reopened.close();
  });

  test("an append that meets the release emptying the file is kept, whichever starts first", async () => {
    for (const appendFirst of [true, false]) {
      const { journal } = await RecordJournal.open(join(directory, `race-${appendFirst}.journal`));
      await journal.append(payload(1));
      await journal.peek();
      // The release empties the journal and truncates the file while the next record is being written.
      const operations = appendFirst
        ? [journal.append(payload(2)), journal.release()]
        : [journal.release(), journal.append(payload(2))];
      await Promise.all(operations);
      expect(await readAll(journal)).toEqual([String(payload(2))]);
      await journal.close();
      const { journal: reopened, recovery } = await RecordJournal.open(join(directory, `race-${appendFirst}.journal`));
      expect(recovery).toMatchObject({ records: 0, skippedRecords: 0, discardedBytes: 0 });
      await reopened.close();
    }
  });

  const isRoot = process.platform === "linux" && process.getuid?.() === 0;
  test.skipIf(!isRoot)(
    "on a full disk a record is written whole or refused with ENOSPC; every accepted record reads back (needs root on Linux to mount a tmpfs)",
    async () => {
      const disk = join(directory, "disk");
      await mkdir(disk);
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", disk]);
      try {
        const { journal } = await RecordJournal.open(join(disk, "full.journal"));
        const accepted: string[] = [];
        let refusal: unknown;
        // 7,000-byte records do not divide the 4 KiB pages: the last one only partly fits (a short write).
        for (let index = 0; index < 20 && refusal === undefined; index++) {
          const record = Buffer.alloc(7_000, 97 + index);
          await journal.append(record).then(
            () => accepted.push(record.toString()),
            (error: unknown) => (refusal = error),
          );
        }
        expect(KilnError.is(refusal, "KILN_JOURNAL_FAILED")).toBe(true);
        expect((refusal as KilnError).details).toMatchObject({ errno: "ENOSPC" });
        expect(journal.records).toBe(accepted.length);
        expect(await readAll(journal)).toEqual(accepted);
        await journal.close();
      } finally {
        execFileSync("umount", [disk]);
      }
    },
  );

  test("bad options are refused with KILN_VALIDATION naming maxBytes", async () => {
    for (const maxBytes of [0, -1, 1.5, Number.NaN]) {
      const error = await RecordJournal.open(join(directory, "x.journal"), { maxBytes }).catch(
        (caught: unknown) => caught,
      );
      expect(KilnError.is(error, "KILN_VALIDATION")).toBe(true);
      expect((error as Error).message).toContain("maxBytes");
    }
  });

  describe("one writer per journal (the lock)", () => {
    test("a second open of the same path in this process is refused with KILN_JOURNAL_LOCKED naming the path; after close it opens", async () => {
      const path = join(directory, "one.journal");
      const { journal: first } = await RecordJournal.open(path);
      await first.append(payload(1));
      const error = await RecordJournal.open(path).catch((caught: unknown) => caught);
      expect(KilnError.is(error, "KILN_JOURNAL_LOCKED")).toBe(true);
      expect((error as KilnError).retryable).toBe(true);
      expect((error as Error).message).toContain(path);
      expect((error as KilnError).details).toMatchObject({
        path,
        lockPath: `${path}.lock`,
        owner: { pid: process.pid, hostname: hostname() },
      });
      // The refused opener changed nothing: the first writer's record and lock are intact.
      await first.append(payload(2));
      expect(first.records).toBe(2);
      await first.close();
      const { journal: second, recovery } = await RecordJournal.open(path);
      expect(recovery.records).toBe(2);
      await second.close();
    });

    test("concurrent opens of one path: exactly one wins", async () => {
      const path = join(directory, "race.journal");
      const results = await Promise.allSettled(Array.from({ length: 8 }, () => RecordJournal.open(path)));
      const won = results.filter((result) => result.status === "fulfilled");
      expect(won).toHaveLength(1);
      for (const result of results) {
        if (result.status === "rejected") expect(KilnError.is(result.reason, "KILN_JOURNAL_LOCKED")).toBe(true);
      }
      await won[0]!.value.journal.close();
    });

    test("a journal held by a live child process is refused; once that process is SIGKILLed its stale lock is taken over", async () => {
      const path = join(directory, "child.journal");
      const source = fileURLToPath(new URL("./record-journal.ts", import.meta.url));
      const child = spawn(
        process.execPath,
        [
          "--import",
          "tsx",
          "--input-type=module",
          "-e",
          `const { RecordJournal } = await import(process.argv[1]);
           const { journal } = await RecordJournal.open(process.argv[2]);
           await journal.append(Buffer.from("from the child"));
           console.log("open");
           setInterval(() => {}, 1000);`,
          source,
          path,
        ],
        { stdio: ["ignore", "pipe", "inherit"] },
      );
      try {
        await new Promise<void>((resolve, reject) => {
          child.stdout.on("data", (data: Buffer) => data.toString().includes("open") && resolve());
          child.on("exit", (code) => reject(new Error(`child exited with ${code}`)));
        });
        const error = await RecordJournal.open(path).catch((caught: unknown) => caught);
        expect(KilnError.is(error, "KILN_JOURNAL_LOCKED")).toBe(true);
        expect((error as KilnError).details).toMatchObject({ owner: { pid: child.pid, hostname: hostname() } });
        child.kill("SIGKILL");
        await once(child, "exit");
        const { journal, recovery } = await RecordJournal.open(path);
        expect(recovery.records).toBe(1);
        expect((await journal.peek())?.toString()).toBe("from the child");
        await journal.close();
      } finally {
        child.kill("SIGKILL");
      }
    }, 20_000);

    test("a symlink or a relative path to the same journal meets the same lock", async () => {
      const path = join(directory, "real.journal");
      const { journal: first } = await RecordJournal.open(path);
      await symlink(path, join(directory, "alias.journal"));
      const viaLink = await RecordJournal.open(join(directory, "alias.journal")).catch((caught: unknown) => caught);
      expect(KilnError.is(viaLink, "KILN_JOURNAL_LOCKED")).toBe(true);
      const viaRelative = await RecordJournal.open(relative(process.cwd(), path)).catch((caught: unknown) => caught);
      expect(KilnError.is(viaRelative, "KILN_JOURNAL_LOCKED")).toBe(true);
      await first.close();
    });

    test.skipIf(process.platform !== "linux")(
      "a lock whose pid now belongs to another process (a restarted container's PID 1) is taken over",
      async () => {
        const path = join(directory, "reused.journal");
        // The parent process is alive, but it is not the owner: the start time does not match.
        const owner = { pid: process.ppid, hostname: hostname(), startTime: "1", token: "old" };
        await writeFile(`${path}.lock`, JSON.stringify(owner));
        const { journal } = await RecordJournal.open(path);
        await journal.close();
        // The same pid with its real start time is the owner: refused.
        const stat = await readFile(`/proc/${process.ppid}/stat`, "utf8");
        const startTime = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
        await writeFile(`${path}.lock`, JSON.stringify({ ...owner, startTime }));
        const error = await RecordJournal.open(path).catch((caught: unknown) => caught);
        expect(KilnError.is(error, "KILN_JOURNAL_LOCKED")).toBe(true);
      },
    );

    test("a lock from another host is never taken over; an unreadable lock file is", async () => {
      const path = join(directory, "foreign.journal");
      await writeFile(`${path}.lock`, JSON.stringify({ pid: 1, hostname: "another-host", token: "x" }));
      const error = await RecordJournal.open(path).catch((caught: unknown) => caught);
      expect(KilnError.is(error, "KILN_JOURNAL_LOCKED")).toBe(true);
      expect((error as Error).message).toContain("another-host");
      await writeFile(`${path}.lock`, "");
      const { journal } = await RecordJournal.open(path);
      await journal.close();
    });
  });
});
