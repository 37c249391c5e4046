/**
 * A throw-away PostgreSQL cluster for the fault suite: `initdb` into a temporary directory,
 * `pg_ctl start` on a free loopback port, and the faults a test inflicts on it (crash, freeze,
 * restart). Run as root, the server commands run as the `postgres` user (PostgreSQL refuses root).
 */
import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { chmod, chown, mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Suffix of a fault test's name: what it needs and how to enable it. */
export const NEEDS_POSTGRES_BINARIES =
  "(needs initdb and pg_ctl: install the PostgreSQL server package, or set PG_BIN)";

/** The directory holding initdb and pg_ctl: `PG_BIN`, else the newest /usr/lib/postgresql/<version>/bin. */
function findBinaries(): string | undefined {
  const candidates = process.env.PG_BIN
    ? [process.env.PG_BIN]
    : existsSync("/usr/lib/postgresql")
      ? readdirSync("/usr/lib/postgresql")
          .sort((a, b) => Number(b) - Number(a))
          .map((version) => `/usr/lib/postgresql/${version}/bin`)
      : [];
  return candidates.find((directory) => existsSync(join(directory, "initdb")) && existsSync(join(directory, "pg_ctl")));
}

const isRoot = process.getuid?.() === 0;

/** Why the fault suite cannot run here, or undefined when it can. */
export const clusterUnavailable: string | undefined = (() => {
  if (process.platform !== "linux") return "the fault suite runs on Linux only";
  if (!findBinaries()) return "initdb/pg_ctl not found";
  if (
    isRoot &&
    !readFileSync("/etc/passwd", "utf8")
      .split("\n")
      .some((line) => line.startsWith("postgres:"))
  ) {
    return "running as root, but there is no postgres user to run the server as";
  }
  return undefined;
})();

/** A loopback TCP port nothing listens on now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** A PostgreSQL cluster of the test's own, with the faults it can inflict. */
export class FaultCluster {
  readonly directory: string;
  readonly port: number;
  readonly #bin: string;

  private constructor(directory: string, port: number, bin: string) {
    this.directory = directory;
    this.port = port;
    this.#bin = bin;
  }

  /** Creates and starts a cluster in a new temporary directory, on a free port. */
  static async create(): Promise<FaultCluster> {
    const bin = findBinaries();
    if (!bin) throw new Error(`no PostgreSQL binaries ${NEEDS_POSTGRES_BINARIES}`);
    const directory = await mkdtemp(join(tmpdir(), "kiln-faults-pg-"));
    if (isRoot) {
      const { stdout } = await run("id", ["-u", "postgres"]);
      const { stdout: group } = await run("id", ["-g", "postgres"]);
      await chown(directory, Number(stdout.trim()), Number(group.trim()));
    }
    await chmod(directory, 0o700);
    const cluster = new FaultCluster(directory, await freePort(), bin);
    await cluster.#as(join(bin, "initdb"), [
      "-D",
      cluster.#data,
      "-U",
      "postgres",
      "-A",
      "trust",
      "--no-sync",
      "-E",
      "UTF8",
      "--locale=C",
    ]);
    await cluster.start();
    await cluster.#as(join(bin, "psql"), [
      "-h",
      "127.0.0.1",
      "-p",
      String(cluster.port),
      "-U",
      "postgres",
      "-c",
      "CREATE DATABASE kiln",
      "postgres",
    ]);
    return cluster;
  }

  /** `postgres://postgres@127.0.0.1:<port>/kiln` */
  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/kiln`;
  }

  /** The same database over the cluster's Unix socket (in {@link directory}): `postgres://postgres@/kiln?host=<dir>&port=<port>`. */
  get socketUrl(): string {
    return `postgres://postgres@/kiln?host=${encodeURIComponent(this.directory)}&port=${this.port}`;
  }

  get #data(): string {
    return join(this.directory, "data");
  }

  /** Starts the server and waits until it accepts connections. */
  async start(): Promise<void> {
    await this.#as(join(this.#bin, "pg_ctl"), [
      "start",
      "-w",
      "-D",
      this.#data,
      "-l",
      join(this.directory, "server.log"),
      "-o",
      `-p ${this.port} -k ${this.directory} -c listen_addresses=127.0.0.1 -c max_connections=40 -c shared_buffers=16MB`,
    ]);
  }

  /** Crashes the server: `pg_ctl stop -m immediate` (no checkpoint; the next start runs crash recovery). */
  async crash(): Promise<void> {
    await this.#as(join(this.#bin, "pg_ctl"), ["stop", "-m", "immediate", "-D", this.#data]);
  }

  /** Stops the server cleanly (`pg_ctl stop -m fast`): its Unix socket file is removed until the next start. */
  async stop(): Promise<void> {
    await this.#as(join(this.#bin, "pg_ctl"), ["stop", "-m", "fast", "-D", this.#data]);
  }

  /** Freezes the postmaster and every backend (SIGSTOP): connections stay open, nothing answers. */
  freeze(): number[] {
    const pids = this.#serverPids();
    for (const pid of pids) process.kill(pid, "SIGSTOP");
    return pids;
  }

  /** Lets frozen processes run again (SIGCONT). */
  thaw(pids: readonly number[]): void {
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGCONT");
      } catch {
        // gone
      }
    }
  }

  /** Stops the server (fast, or immediate when it does not stop) and deletes the directory. */
  async destroy(): Promise<void> {
    const pids = this.#serverPids();
    this.thaw(pids);
    if (pids.length > 0) {
      await this.#as(join(this.#bin, "pg_ctl"), ["stop", "-m", "fast", "-t", "20", "-D", this.#data]).catch(() =>
        this.#as(join(this.#bin, "pg_ctl"), ["stop", "-m", "immediate", "-D", this.#data]).catch(() => undefined),
      );
    }
    await rm(this.directory, { recursive: true, force: true });
  }

  /** The postmaster (first line of postmaster.pid) and its children, or none when it is not running. */
  #serverPids(): number[] {
    let postmaster: number;
    try {
      postmaster = Number(readFileSync(join(this.#data, "postmaster.pid"), "utf8").split("\n")[0]);
    } catch {
      return [];
    }
    const children: number[] = [];
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
        const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        if (parent === postmaster) children.push(Number(entry));
      } catch {
        // exited meanwhile
      }
    }
    return [postmaster, ...children];
  }

  async #as(command: string, args: readonly string[]): Promise<void> {
    const [file, argv] = isRoot ? ["runuser", ["-u", "postgres", "--", command, ...args]] : [command, [...args]];
    await run(file, argv, { cwd: this.directory, timeout: 60_000 });
  }
}

/** Prints why the fault cases of a file are skipped (also in their names) and how to enable them. */
export function announceSkip(what: string): void {
  if (clusterUnavailable) console.log(`[faults] ${what} skipped: ${clusterUnavailable} ${NEEDS_POSTGRES_BINARIES}`);
}
