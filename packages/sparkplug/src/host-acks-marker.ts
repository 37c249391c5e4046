import { open, readFile, rename, unlink } from "node:fs/promises";
import path from "node:path";

/**
 * The file beside a store-and-forward journal recording that the primary host acknowledged what
 * it stored (ADR 0043 fix19g): `<journal path>.host-acks`, `{"primaryHostId":"scada"}`. With
 * `awaitHostAcks` `"auto"` an edge node awaits acknowledgements from the first ack of a run; the
 * file makes a restarted process await them from its start, so what it recovers and what it
 * publishes while that host is gone is kept until the host stores it. Internal.
 */
export function hostAcksMarkerPath(journalPath: string): string {
  return `${journalPath}.host-acks`;
}

/**
 * The primary host id the marker names, `undefined` when there is no marker, or `null` when the
 * file is there but unreadable (the caller takes that as acknowledging: the safe side keeps data).
 */
export async function loadHostAcksMarker(file: string): Promise<string | undefined | null> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    return null;
  }
  try {
    const hostId = (JSON.parse(text) as { primaryHostId?: unknown }).primaryHostId;
    return typeof hostId === "string" ? hostId : null;
  } catch {
    return null;
  }
}

/** Writes the marker durably: a temporary file fsynced, renamed over the marker, the folder fsynced. */
export async function saveHostAcksMarker(file: string, primaryHostId: string): Promise<void> {
  const temporary = `${file}.${process.pid}.tmp`;
  const handle = await open(temporary, "w");
  try {
    await handle.writeFile(JSON.stringify({ primaryHostId }));
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await rename(temporary, file);
  } catch (error) {
    await unlink(temporary).catch(() => undefined);
    throw error;
  }
  const folder = await open(path.dirname(file), "r").catch(() => undefined);
  if (folder !== undefined)
    await folder
      .sync()
      .catch(() => undefined)
      .finally(() => folder.close());
}
