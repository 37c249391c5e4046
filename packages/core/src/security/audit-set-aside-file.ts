import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";

/**
 * Which of `candidates` (entries as their exact JSON lines) the `<journal>.set-aside` file at
 * `file` holds. Read line by line, keeping only the matches: the file grows with every entry ever
 * kept aside and is never read whole, so its size bounds neither memory nor the open (a file of
 * hundreds of MB read whole at every start, and past Node's largest string not at all; adversarial
 * review adv15x, MEDIUM-2). Memory is bounded by the candidates (the journal's replayed records).
 *
 * @returns the matched lines; an empty set when the file does not exist.
 * @throws the file's read error other than `ENOENT` (the caller then matches nothing: an entry
 *   kept aside twice, never lost).
 */
export async function setAsideLinesAmong(file: string, candidates: ReadonlySet<string>): Promise<Set<string>> {
  const found = new Set<string>();
  if (candidates.size === 0) return found;
  const stream = createReadStream(file, { encoding: "utf8" });
  const lines = createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY });
  try {
    for await (const line of lines) {
      if (candidates.has(line)) {
        found.add(line);
        if (found.size === candidates.size) break;
      }
    }
  } catch (error) {
    if ((error as { code?: unknown }).code === "ENOENT") return found;
    throw error;
  } finally {
    lines.close();
    stream.destroy();
  }
  return found;
}
