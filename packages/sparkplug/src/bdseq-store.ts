import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { KilnError } from "@kiln/core";

/**
 * Where an edge node keeps the last birth/death sequence number (`bdSeq`) it used, so that a
 * restarted process goes on from it instead of starting again at 0 (Sparkplug 3.0.0,
 * [tck-id-topics-nbirth-bdseq-increment]: bdSeq increments by one on every new MQTT CONNECT).
 * A host application tells an NDEATH of an old session from the current one by its bdSeq.
 */
export interface BdSeqStore {
  /** The last bdSeq used (0–255), or undefined when none was ever saved. */
  load(): Promise<number | undefined>;
  /** Records `bdSeq` as the last used; called before the CONNECT that carries it. */
  save(bdSeq: number): Promise<void>;
}

/**
 * A {@link BdSeqStore} in memory: bdSeq starts at `initial` + 1 (0 without it) again in each new
 * process, so a hung predecessor's late NDEATH Will can carry the bdSeq of the new session and
 * take it down at the host. For tests; in production use {@link fileBdSeqStore} (an edge node
 * given no store starts at a random bdSeq instead).
 */
export function memoryBdSeqStore(initial?: number): BdSeqStore {
  let last = initial;
  return {
    load: () => Promise.resolve(last),
    save: (bdSeq) => {
      last = bdSeq;
      return Promise.resolve();
    },
  };
}

/**
 * A {@link BdSeqStore} in a small JSON file (`{"bdSeq":12}`), replaced atomically (write to a
 * temporary file, then rename), so a crash leaves the old or the new number, never a torn one.
 *
 * @param file the file's path; its folder is created when missing.
 * @throws (from `load`) KilnError `KILN_VALIDATION` when the file holds something else than a
 *   bdSeq from 0 to 255; a missing file is `undefined`.
 */
export function fileBdSeqStore(file: string): BdSeqStore {
  return {
    async load() {
      let text: string;
      try {
        text = await readFile(file, "utf8");
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
        throw error;
      }
      let bdSeq: unknown;
      try {
        bdSeq = (JSON.parse(text) as { bdSeq?: unknown }).bdSeq;
      } catch {
        bdSeq = undefined;
      }
      if (typeof bdSeq !== "number" || !Number.isInteger(bdSeq) || bdSeq < 0 || bdSeq > 255) {
        throw new KilnError(
          "KILN_VALIDATION",
          `The bdSeq file ${file} does not hold {"bdSeq": 0..255}; fix or delete it.`,
          {
            details: { file },
          },
        );
      }
      return bdSeq;
    },
    async save(bdSeq) {
      await mkdir(path.dirname(file), { recursive: true });
      const temporary = `${file}.${process.pid}.tmp`;
      await writeFile(temporary, JSON.stringify({ bdSeq }));
      await rename(temporary, file);
    },
  };
}
