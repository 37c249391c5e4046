import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { link, open, readFile, readlink, realpath, rename, unlink } from "node:fs/promises";
import { hostname } from "node:os";
import path from "node:path";
import { KilnError } from "../domain/errors";

/** Who holds a journal's lock: written into `<journal>.lock`. */
export interface JournalLockOwner {
  /** Process id of the owner. */
  readonly pid: number;
  /** Host name of the owner (a lock from another host is never taken over automatically). */
  readonly hostname: string;
  /** The kernel's boot id (Linux), so a lock left before a reboot is stale even if its pid is reused. */
  readonly bootId?: string;
  /**
   * The owner's start time (Linux: field 22 of `/proc/<pid>/stat`, clock ticks since boot), so a
   * lock whose pid now belongs to another process (a container restarted as PID 1) is stale.
   */
  readonly startTime?: string;
  /**
   * The owner's PID namespace (Linux: the link `/proc/self/ns/pid`, e.g. `pid:[4026531836]`). A
   * holder in another PID namespace cannot be checked from this one (its pid means another
   * process here, or none), so its lock is never taken over.
   */
  readonly pidNamespace?: string;
  /** Unique per acquisition, so a release never removes a lock another opener took over. */
  readonly token: string;
}

/**
 * The exclusive lock of one journal file: `<journal>.lock`, holding the owner's pid, host name
 * and boot id. A journal has exactly one writer; two writers on one file lose records silently
 * (each keeps its own idea of the file's end and truncates the other's records away).
 *
 * The lock file is written in full under a unique name and then hard-linked to `<journal>.lock`,
 * which fails with `EEXIST` when it exists: atomic on every local file system (and on NFS), and
 * no reader ever sees a half-written owner. An existing lock is stale, and taken over, when its
 * owner was on this host and its process is gone (or the host rebooted since); it is moved aside
 * by an atomic `rename`, so of two openers taking over the same stale lock only one succeeds.
 * A lock of another host is never taken over: remove it by hand once that host's process is gone.
 * Nor is a lock of another PID namespace on this host (another container with the same host
 * name sharing the volume: its pid cannot be checked from here); `KILN_JOURNAL_LOCKED` says so.
 * A container restarted with a fresh PID namespace after a crash therefore finds its old lock
 * refused: remove `<journal>.lock` by hand once sure the old process is gone.
 */
export class JournalLock {
  /** The lock file. */
  readonly path: string;
  readonly #owner: JournalLockOwner;

  private constructor(path: string, owner: JournalLockOwner) {
    this.path = path;
    this.#owner = owner;
  }

  /**
   * Takes the lock of the journal at `journalPath`. `pathOption` names the option its owner's
   * user set that path with (`spoolPath`, `audit.backlog.path`, ...): a locked journal's message
   * tells the user to give each one its own.
   * `makeRoom`, when given, is called once when the lock file cannot be written for a full disk
   * (`ENOSPC`) and no live process holds the lock: it frees room the caller set aside (true when
   * it freed some), and the lock is tried again.
   * @throws KilnError `KILN_JOURNAL_LOCKED` (retryable) when a live process holds it, this one
   *   included (`details.path`, `details.lockPath`, `details.owner`); `KILN_JOURNAL_FAILED` when
   *   the lock file cannot be written.
   */
  static async acquire(
    journalPath: string,
    pathOption = "journal path",
    makeRoom?: () => Promise<boolean>,
  ): Promise<JournalLock> {
    // One lock per file, whatever name reaches it: a symlink, `..` or a relative path (resolved
    // now, so a later chdir cannot make the release miss it). Hard links are not unified.
    const lockPath = `${await realFile(journalPath)}.lock`;
    const bootId = await readBootId();
    const startTime = readStartTime(process.pid);
    const pidNamespace = await readPidNamespace();
    const owner: JournalLockOwner = {
      pid: process.pid,
      hostname: hostname(),
      ...(bootId === undefined ? {} : { bootId }),
      ...(startTime === undefined ? {} : { startTime }),
      ...(pidNamespace === undefined ? {} : { pidNamespace }),
      token: randomUUID(),
    };
    const draft = `${lockPath}.${owner.token}`;
    for (let roomMade = false; ;) {
      try {
        const file = await open(draft, "wx");
        try {
          await file.writeFile(JSON.stringify(owner));
          await file.sync();
        } finally {
          await file.close();
        }
        break;
      } catch (error) {
        await unlink(draft).catch(() => undefined); // a full disk must not leave drafts behind
        if (errnoOf(error) !== "ENOSPC" || makeRoom === undefined || roomMade) throw lockError(journalPath, error);
        // A full disk: a live holder is named as such (nothing of its is touched); otherwise the
        // owner frees room it set aside for this (the audit reserve: issue 15) and it is tried once more.
        const holder = await readOwner(lockPath);
        if (holder !== "gone" && !isStale(holder, owner)) {
          throw lockedError(journalPath, lockPath, holder, owner, pathOption);
        }
        roomMade = true;
        if (!(await makeRoom().catch(() => false))) throw lockError(journalPath, error);
      }
    }
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          await link(draft, lockPath);
          return new JournalLock(lockPath, owner);
        } catch (error) {
          if (errnoOf(error) !== "EEXIST") throw lockError(journalPath, error);
        }
        const holder = await readOwner(lockPath);
        if (holder === "gone") continue;
        if (!isStale(holder, owner) || attempt >= 3)
          throw lockedError(journalPath, lockPath, holder, owner, pathOption);
        const aside = `${lockPath}.stale.${owner.token}`;
        try {
          await rename(lockPath, aside);
        } catch (error) {
          if (errnoOf(error) === "ENOENT") continue; // another opener moved it first
          throw lockError(journalPath, error);
        }
        const moved = await readOwner(aside);
        if (moved !== "gone" && moved !== undefined && moved.token !== holder?.token) {
          // A live opener's fresh lock was moved, not the stale one: give it back.
          await link(aside, lockPath).catch(() => undefined);
          await unlink(aside).catch(() => undefined);
          throw lockedError(journalPath, lockPath, moved, owner, pathOption);
        }
        await unlink(aside).catch(() => undefined);
      }
    } finally {
      await unlink(draft).catch(() => undefined);
    }
  }

  /** Releases the lock (removes the lock file if it is still this opener's). */
  async release(): Promise<void> {
    const holder = await readOwner(this.path);
    if (holder !== "gone" && holder?.token === this.#owner.token) {
      await unlink(this.path).catch(() => undefined);
    }
  }
}

/** The owner in a lock file; undefined when it cannot be parsed; "gone" when there is no file. */
async function readOwner(path: string): Promise<JournalLockOwner | undefined | "gone"> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if (errnoOf(error) === "ENOENT") return "gone";
    return undefined;
  }
  try {
    const parsed = JSON.parse(text) as Partial<JournalLockOwner> | null;
    if (
      typeof parsed?.pid === "number" &&
      typeof parsed.hostname === "string" &&
      typeof parsed.token === "string" &&
      (parsed.bootId === undefined || typeof parsed.bootId === "string") &&
      (parsed.startTime === undefined || typeof parsed.startTime === "string") &&
      (parsed.pidNamespace === undefined || typeof parsed.pidNamespace === "string")
    ) {
      return parsed as JournalLockOwner;
    }
  } catch {
    // fall through: unreadable
  }
  return undefined;
}

/**
 * A lock is stale when its owner cannot still hold it: the same host, and its process is gone
 * or the host rebooted since. A holder in another PID namespace (another container sharing the
 * host name and the volume) cannot be checked from here: never stale. A lock file that cannot be parsed (a crash or power loss while it
 * was created; it is written in full before it gets its name, so only a damaged disk leaves one)
 * is stale too.
 */
function isStale(holder: JournalLockOwner | undefined, self: JournalLockOwner): boolean {
  if (holder === undefined) return true;
  if (holder.hostname !== self.hostname) return false;
  if (holder.bootId !== undefined && self.bootId !== undefined && holder.bootId !== self.bootId) return true;
  if (otherPidNamespace(holder, self)) return false;
  if (!processAlive(holder.pid)) return true;
  // The pid is alive: the same process only if it started when the owner did (a restarted
  // container's PID 1 is another process under the same pid).
  if (holder.startTime === undefined) return false;
  const now = readStartTime(holder.pid);
  return now !== undefined && now !== holder.startTime;
}

/** The real path of the journal file (its directory's, when the file does not exist yet). */
async function realFile(journalPath: string): Promise<string> {
  const absolute = path.resolve(journalPath);
  try {
    return await realpath(absolute);
  } catch {
    try {
      return path.join(await realpath(path.dirname(absolute)), path.basename(absolute));
    } catch {
      return absolute;
    }
  }
}

/** Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot), or undefined off Linux. */
function readStartTime(pid: number): string | undefined {
  try {
    return startTimeOf(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return undefined;
  }
}

function startTimeOf(stat: string): string | undefined {
  // The command name (field 2) is in parentheses and may hold spaces: count from its end.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return fields[19];
}

function processAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, under another user.
    return errnoOf(error) === "EPERM";
  }
}

/** True when the holder recorded a PID namespace and it is not the opener's. */
function otherPidNamespace(holder: JournalLockOwner, self: JournalLockOwner): boolean {
  return (
    holder.pidNamespace !== undefined && self.pidNamespace !== undefined && holder.pidNamespace !== self.pidNamespace
  );
}

/** The link `/proc/self/ns/pid` (`pid:[<inode>]`), or undefined off Linux. */
async function readPidNamespace(): Promise<string | undefined> {
  try {
    return await readlink("/proc/self/ns/pid");
  } catch {
    return undefined;
  }
}

async function readBootId(): Promise<string | undefined> {
  try {
    return (await readFile("/proc/sys/kernel/random/boot_id", "utf8")).trim() || undefined;
  } catch {
    return undefined;
  }
}

function errnoOf(error: unknown): unknown {
  return (error as { code?: unknown } | null)?.code;
}

function lockedError(
  journalPath: string,
  lockPath: string,
  holder: JournalLockOwner | undefined,
  opener: JournalLockOwner,
  pathOption: string,
): KilnError {
  const who = holder === undefined ? "an unknown owner" : `process ${holder.pid} on ${holder.hostname}`;
  const elsewhere = holder !== undefined && holder.hostname === opener.hostname && otherPidNamespace(holder, opener);
  const self = !elsewhere && holder?.pid === process.pid && holder.hostname === hostname();
  const message = elsewhere
    ? `Journal ${journalPath} is locked by process ${holder.pid} in another PID namespace (${holder.pidNamespace}, ` +
      `this one is ${opener.pidNamespace}; another container on ${holder.hostname}?), which cannot be checked from here: ` +
      `a journal has exactly one writer. Remove ${lockPath} by hand only when you are sure that process is gone.`
    : `Journal ${journalPath} is in use by ${self ? "another journal in this process" : who}: a journal has exactly one writer. ` +
      `Give each control system its own ${pathOption}, or start this one after the other has stopped (its stop() releases ${lockPath}).`;
  return new KilnError("KILN_JOURNAL_LOCKED", message, {
    retryable: true,
    details: {
      path: journalPath,
      lockPath,
      ...(holder === undefined
        ? {}
        : {
            owner: {
              pid: holder.pid,
              hostname: holder.hostname,
              ...(holder.pidNamespace === undefined ? {} : { pidNamespace: holder.pidNamespace }),
            },
          }),
    },
  });
}

function lockError(journalPath: string, error: unknown): KilnError {
  const errno = errnoOf(error);
  return new KilnError(
    "KILN_JOURNAL_FAILED",
    `Journal ${journalPath}: lock failed: ${error instanceof Error ? error.message : String(error)}.`,
    {
      cause: error,
      retryable: true,
      details: { path: journalPath, operation: "lock", ...(typeof errno === "string" ? { errno } : {}) },
    },
  );
}
