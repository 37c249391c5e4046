/**
 * The host of the fleet case: a `SparkplugHost` writing a Sparkplug group into PostgreSQL, in a
 * process of its own so the case can kill it.
 *
 * Measures end-to-end latency where a sample is known to be stored: after each
 * `store.samples.writeBatch` resolves (committed), `now - sample.timestamp` (the source
 * timestamp the edge node's PLC gave it; same machine, same clock) is appended, in whole ms as
 * little-endian int32, to `<latency file>.live` for samples the host took live (announced by
 * `live-update`) and to `<latency file>.historical` for the rest (store-and-forward replays).
 *
 * Prints `health <json>` (the host's sample counters and edge node states) every 250 ms; on
 * SIGTERM it stops the host (which drains its queue into the store), prints `final <json>`, exits 0.
 *
 * With `<write delay ms>` each `writeBatch` waits that long before it writes: a host that runs
 * behind, so that killing it loses what it holds unless the edge nodes await its acks.
 *
 * Usage: sparkplug-host-process.ts <broker url> <group> <host id> <database url> <schema> <latency file> [<write delay ms>]
 */
import { appendFileSync } from "node:fs";
import type { Sample, Store } from "@kiln/core";
import { SparkplugHost, type SparkplugHostEdgeNodeHealth, type SparkplugHostHealth } from "@kiln/sparkplug";
import { PostgresStore } from "@kiln/store-postgres";

const [brokerUrl, groupId, hostId, databaseUrl, schema, latencyFile, writeDelayMs] = process.argv.slice(2);
const writeDelay = Number(writeDelayMs ?? 0);
if (!brokerUrl || !groupId || !hostId || !databaseUrl || !schema || !latencyFile) {
  throw new Error(
    "usage: sparkplug-host-process.ts <broker url> <group> <host id> <database url> <schema> <latency file>",
  );
}

const store = new PostgresStore({ connectionString: databaseUrl, schema, maxConnections: 4 });
const live = new Set<string>();
const key = (tag: string, timestamp: number): string => `${tag}\u0000${timestamp}`;

async function writeBatch(samples: readonly Sample[]): ReturnType<Store["samples"]["writeBatch"]> {
  if (writeDelay > 0) await new Promise((resolve) => setTimeout(resolve, writeDelay));
  const result = await store.samples.writeBatch(samples);
  const now = Date.now();
  const liveMs: number[] = [];
  const historicalMs: number[] = [];
  for (const sample of samples) {
    const latency = Math.round(now - sample.timestamp);
    if (live.delete(key(sample.tag, sample.timestamp))) liveMs.push(latency);
    else historicalMs.push(latency);
  }
  if (liveMs.length > 0) appendFileSync(`${latencyFile}.live`, new Uint8Array(new Int32Array(liveMs).buffer));
  if (historicalMs.length > 0)
    appendFileSync(`${latencyFile}.historical`, new Uint8Array(new Int32Array(historicalMs).buffer));
  return result;
}

/** The store with its sample sink's `writeBatch` measured; everything else passed through. */
function measured(target: Store): Store {
  const pass = <TTarget extends object>(object: TTarget, replace: Partial<Record<PropertyKey, unknown>>): TTarget =>
    new Proxy(object, {
      get(inner, property) {
        if (property in replace) return replace[property];
        const value: unknown = Reflect.get(inner, property, inner);
        return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(inner) : value;
      },
    });
  return pass(target, { samples: pass(target.samples, { writeBatch }) });
}

const host = new SparkplugHost({
  brokerUrl,
  hostId,
  groups: [groupId],
  store: measured(store),
  reconnect: { initialDelayMs: 200, maxDelayMs: 1_000 },
});
host.events.on("live-update", (update) => {
  for (const metric of update.metrics) live.add(key(metric.sample.tag, metric.sample.timestamp));
});

/** What the host process prints after `health `: its counters, edge nodes keyed by id. */
export interface HostCounters {
  readonly link: SparkplugHostHealth["link"];
  readonly online: boolean;
  readonly samples: SparkplugHostHealth["samples"];
  readonly storeErrors: number;
  readonly edgeNodes: Record<
    string,
    Pick<
      SparkplugHostEdgeNodeHealth,
      | "state"
      | "births"
      | "seqGaps"
      | "dataBeforeBirth"
      | "rebirthsRequested"
      | "rebirthsSuppressed"
      | "rebirthsPaced"
      | "staleDeaths"
    >
  >;
}

function counters(): HostCounters {
  const health = host.health();
  return {
    link: health.link,
    online: health.state.online,
    samples: health.samples,
    storeErrors: health.storeErrors,
    edgeNodes: Object.fromEntries(
      health.edgeNodes.map((node) => [
        node.edgeNodeId,
        {
          state: node.state,
          births: node.births,
          seqGaps: node.seqGaps,
          dataBeforeBirth: node.dataBeforeBirth,
          rebirthsRequested: node.rebirthsRequested,
          rebirthsSuppressed: node.rebirthsSuppressed,
          rebirthsPaced: node.rebirthsPaced,
          staleDeaths: node.staleDeaths,
        },
      ]),
    ),
  };
}

await host.start();
const timer = setInterval(() => process.stdout.write(`health ${JSON.stringify(counters())}\n`), 250);
process.once("SIGTERM", () => {
  clearInterval(timer);
  void host.stop().then(async () => {
    await store.close();
    process.stdout.write(`final ${JSON.stringify(counters())}\n`);
    process.exit(0);
  });
});
