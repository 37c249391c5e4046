import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { mosquittoAvailability, startMosquitto, type TestBroker } from "@kiln/sparkplug/testing";
import pg from "pg";
import { afterAll, describe, expect, test } from "vitest";
import { announceSkip, clusterUnavailable, NEEDS_POSTGRES_BINARIES } from "./support/cluster";
import { report, useFaultCluster } from "./support/case";
import { hold } from "./support/pipeline";
import { ReportingProcess } from "./support/reporting-process";
import type { HostCounters } from "./support/sparkplug-host-process";

// Issue 19's proof: a fleet of edge nodes in processes of their own → the case's own mosquitto →
// one SparkplugHost (own process) → PostgreSQL; the broker killed and restarted, then the host.
// Sizes from the environment, the numbers by default.
const EDGE_NODES = Number(process.env.KILN_FLEET_EDGE_NODES ?? 10);
const TAGS = Number(process.env.KILN_FLEET_TAGS ?? 1_000);
const PERIOD_MS = Number(process.env.KILN_FLEET_PERIOD_MS ?? 1_000);
/** Wall time of each calm stretch between faults, and of each outage, in ms. */
const STRETCH_MS = Number(process.env.KILN_FLEET_STRETCH_MS ?? 8_000);
/**
 * How long the first host waits before each store write, in ms: it runs behind, so it holds
 * samples it has not committed when it is killed (what the edge nodes' acks must cover).
 */
const HOST_LAG_MS = Number(process.env.KILN_FLEET_HOST_LAG_MS ?? 400);

const GROUP = "fleet";
const HOST_ID = "fleet-host";
const SCHEMA = "sparkplug_fleet";
const NEEDS_MOSQUITTO = "(needs mosquitto: apt-get install mosquitto, or set MOSQUITTO_BINARY)";

const edgeScript = fileURLToPath(new URL("support/sparkplug-edge-process.ts", import.meta.url));
const hostScript = fileURLToPath(new URL("support/sparkplug-host-process.ts", import.meta.url));

interface EdgeHealth {
  readonly link: string;
  readonly host?: string;
  readonly publishing: boolean;
  readonly births: number;
  readonly metrics: number;
  readonly backlogSamples: number;
  readonly unacknowledgedSamples: number;
  readonly samplesAcknowledged: number;
  readonly samplesStored: number;
  readonly samplesReplayed: number;
  readonly samplesDropped: number;
  readonly dropped: number;
}

interface EdgeFinal extends EdgeHealth {
  /** Whether the window's last values were handed to the broker before the node stopped. */
  readonly published: boolean;
  /** Samples published by the end of the window that the host had not acknowledged 20 s later. */
  readonly windowUnacknowledged: number;
  readonly drops: readonly string[];
  /** Per tag `seq.<i>`: the first and last counter value the CVT produced while observed. */
  readonly first: readonly (number | null)[];
  readonly last: readonly (number | null)[];
}

/** What a host reported last: its sample counters and its edge nodes' seq gaps and births, summed. */
function hostSummary(health: HostCounters | undefined): Record<string, number> | undefined {
  if (health === undefined) return undefined;
  const nodes = Object.values(health.edgeNodes);
  return {
    received: health.samples.received,
    stored: health.samples.stored,
    queued: health.samples.queued,
    discarded: health.samples.discarded,
    dropped: health.samples.dropped,
    conflicts: health.samples.conflicts,
    // Data of unverified edge nodes held until their NBIRTH, and of it stored uncertain (ADR 0043,
    // fix19z). `held` is what is held at the report (a gauge: the case waits for it to be 0 before
    // the end); the two after it count the whole run.
    held: health.samples.held,
    heldUncertain: health.samples.heldUncertain,
    heldReturned: health.samples.heldReturned,
    storeErrors: health.storeErrors,
    seqGaps: nodes.reduce((sum, node) => sum + node.seqGaps, 0),
    dataBeforeBirth: nodes.reduce((sum, node) => sum + node.dataBeforeBirth, 0),
    births: nodes.reduce((sum, node) => sum + node.births, 0),
    // Why data before birth lasted as long as it did: requests sent, held back by
    // rebirthIntervalMs (and the per-node backoff) or by maxOutstandingRebirths.
    rebirthsRequested: nodes.reduce((sum, node) => sum + node.rebirthsRequested, 0),
    rebirthsSuppressed: nodes.reduce((sum, node) => sum + node.rebirthsSuppressed, 0),
    rebirthsPaced: nodes.reduce((sum, node) => sum + node.rebirthsPaced, 0),
    staleDeaths: nodes.reduce((sum, node) => sum + node.staleDeaths, 0),
  };
}

const mosquitto = mosquittoAvailability();
// The suite's own cluster; without its binaries, the server at DATABASE_URL (schema dropped first).
const sharedDatabase = clusterUnavailable === undefined ? undefined : process.env.DATABASE_URL || undefined;
// A SparkplugHost killed while behind loses what the broker had delivered to it and it had not
// written (DDATA is QoS 0); the edge nodes run with awaitHostAcks (ADR 0037), so they keep every
// published sample until the host acknowledges it stored it, and send the rest to the next host.
const unavailable =
  (sharedDatabase === undefined ? clusterUnavailable : undefined) ??
  (mosquitto.available ? undefined : mosquitto.reason);
if (!mosquitto.available) console.log(`[faults] Sparkplug fleet case skipped: ${mosquitto.reason}`);
else if (sharedDatabase === undefined) announceSkip("Sparkplug fleet case");

function percentile(sorted: Int32Array, fraction: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))]!;
}

/** Every latency (ms) the host processes wrote to `<scratch>/latency-*.<kind>`, sorted. */
async function latencies(scratch: string, kind: "live" | "historical"): Promise<Int32Array> {
  const parts: Int32Array[] = [];
  for (const file of await readdir(scratch)) {
    if (!file.startsWith("latency-") || !file.endsWith(`.${kind}`)) continue;
    const bytes = await readFile(join(scratch, file));
    parts.push(new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4));
  }
  const all = new Int32Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    all.set(part, offset);
    offset += part.length;
  }
  return all.sort();
}

/** The reason a Sparkplug host gives a birth value it restates after its stale mark (ADR 0043). */
const RESTATED = "restated by a birth after a loss of trust";

/** Per edge node, what the database holds of each tag's window `[first, last]` (good samples only). */
async function countWindows(
  url: string,
  finals: readonly EdgeFinal[],
): Promise<{
  expected: number;
  stored: number;
  lost: number;
  duplicated: number;
  restated: number;
  tagsWithLoss: number;
  missing: { edge: string; value: number; after: string | null }[];
  duplicates: { name: string; value: number; time: string; reason: string | null }[];
}> {
  const names: string[] = [];
  const lows: number[] = [];
  const highs: number[] = [];
  finals.forEach((final, edge) => {
    for (let tag = 0; tag < TAGS; tag++) {
      names.push(`${GROUP}/edge-${edge}/machine/seq.${tag}`);
      lows.push(final.first[tag] ?? 0);
      highs.push(final.last[tag] ?? -1);
    }
  });
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    // A birth after a loss of trust whose values are older than the host's stale mark is stored
    // again 1 µs after the mark, its reason saying so (ADR 0043): a restatement, not a second
    // measurement. Duplicates are counted among the measurements; restatements are reported.
    const { rows } = await client.query<{ name: string; rows: number; distinct: number; restated: number }>(
      `SELECT w.name,
              count(s.value_float) FILTER (WHERE position($4 in coalesce(s.quality_reason, '')) = 0)::int4 AS rows,
              count(DISTINCT s.value_float) FILTER (WHERE position($4 in coalesce(s.quality_reason, '')) = 0)::int4
                AS distinct,
              count(s.value_float) FILTER (WHERE position($4 in coalesce(s.quality_reason, '')) > 0)::int4 AS restated
         FROM unnest($1::text[], $2::float8[], $3::float8[]) AS w(name, low, high)
         LEFT JOIN "${SCHEMA}".tags t ON t.name = w.name
         LEFT JOIN "${SCHEMA}".samples s
           ON s.tag_id = t.id AND s.quality = 0 AND s.value_float BETWEEN w.low AND w.high
        GROUP BY w.name`,
      [names, lows, highs, RESTATED],
    );
    const windows = new Map(names.map((name, index) => [name, highs[index]! - lows[index]! + 1]));
    let expected = 0;
    let stored = 0;
    let lost = 0;
    let duplicated = 0;
    let restated = 0;
    let tagsWithLoss = 0;
    for (const row of rows) {
      const size = windows.get(row.name)!;
      expected += size;
      stored += row.distinct;
      lost += size - row.distinct;
      duplicated += row.rows - row.distinct;
      restated += row.restated;
      if (row.distinct < size) tagsWithLoss++;
    }
    // Where the losses are: per edge node, the missing numbers of its first tag with a loss, each
    // with the source time of the number before it (the fault the loss belongs to).
    const missing: { edge: string; value: number; after: string | null }[] = [];
    const lossy = rows.filter((row) => row.distinct < windows.get(row.name)!);
    const firstPerEdge = new Map<string, string>();
    for (const row of lossy) {
      const edge = row.name.split("/")[1]!;
      if (!firstPerEdge.has(edge)) firstPerEdge.set(edge, row.name);
    }
    for (const [edge, name] of firstPerEdge) {
      const index = names.indexOf(name);
      const gaps = await client.query<{ value: number; after: string | null }>(
        `SELECT g.value, (SELECT max(s.time) FROM "${SCHEMA}".samples s
                           WHERE s.tag_id = t.id AND s.value_float = g.value - 1)::text AS after
           FROM "${SCHEMA}".tags t, generate_series($2::int8, $3::int8) AS g(value)
          WHERE t.name = $1 AND NOT EXISTS (
            SELECT 1 FROM "${SCHEMA}".samples s WHERE s.tag_id = t.id AND s.quality = 0 AND s.value_float = g.value)
          LIMIT 5`,
        [name, lows[index], highs[index]],
      );
      for (const gap of gaps.rows) missing.push({ edge, value: Number(gap.value), after: gap.after });
    }
    // Where the duplicates are, when there are any: the rows of the first few values stored twice.
    const duplicates: { name: string; value: number; time: string; reason: string | null }[] = [];
    const doubled = rows.find((row) => row.rows > row.distinct);
    if (doubled !== undefined) {
      const index = names.indexOf(doubled.name);
      const found = await client.query<{ value: number; time: string; reason: string | null }>(
        `SELECT s.value_float AS value, s.time::text AS time, s.quality_reason AS reason
           FROM "${SCHEMA}".tags t JOIN "${SCHEMA}".samples s ON s.tag_id = t.id
          WHERE t.name = $1 AND s.quality = 0 AND s.value_float BETWEEN $2 AND $3
            AND s.value_float IN (SELECT value_float FROM "${SCHEMA}".samples
                                   WHERE tag_id = t.id AND quality = 0 GROUP BY value_float HAVING count(*) > 1)
          ORDER BY s.time LIMIT 6`,
        [doubled.name, lows[index], highs[index]],
      );
      for (const row of found.rows) duplicates.push({ name: doubled.name, ...row });
    }
    return { expected, stored, lost, duplicated, restated, tagsWithLoss, missing, duplicates };
  } finally {
    await client.end();
  }
}

describe.skipIf(unavailable !== undefined)(
  `A Sparkplug fleet through a broker crash and a host crash ${NEEDS_POSTGRES_BINARIES.replace(")", ", or set DATABASE_URL)")} ${NEEDS_MOSQUITTO}`,
  () => {
    const env = useFaultCluster();
    let broker: TestBroker | undefined;
    let ownScratch: string | undefined;
    const processes: ReportingProcess<unknown, unknown>[] = [];
    afterAll(async () => {
      for (const each of processes) await each.kill();
      await broker?.stop();
      if (ownScratch !== undefined) await rm(ownScratch, { recursive: true, force: true });
    });

    test(`${EDGE_NODES} edge nodes × ${TAGS} counters every ${PERIOD_MS} ms: per tag, each number stored once; latency reported`, async () => {
      const began = Date.now();
      const phase = (what: string): void =>
        console.log(`[faults] sparkplug-fleet +${Date.now() - began} ms (${new Date().toISOString()}): ${what}`);
      let database: string;
      let scratch: string;
      if (sharedDatabase === undefined) {
        database = env.cluster().url;
        scratch = env.scratch();
      } else {
        database = sharedDatabase;
        scratch = ownScratch = await mkdtemp(join(tmpdir(), "kiln-faults-fleet-"));
        const client = new pg.Client({ connectionString: database });
        await client.connect();
        await client.query(`DROP SCHEMA IF EXISTS "${SCHEMA}" CASCADE`);
        await client.end();
      }
      broker = await startMosquitto();
      let hosts = 0;
      const startHost = (): ReportingProcess<HostCounters> => {
        const host = new ReportingProcess<HostCounters>(`host ${++hosts}`, hostScript, [
          broker!.url,
          GROUP,
          HOST_ID,
          database,
          SCHEMA,
          join(scratch, `latency-${hosts}`),
          String(hosts === 1 ? HOST_LAG_MS : 0),
        ]);
        processes.push(host as ReportingProcess<unknown, unknown>);
        return host;
      };
      let host = startHost();
      await host.until("STATE online", (health) => health.online, 60_000);

      const edges = Array.from({ length: EDGE_NODES }, (_, index) => {
        const edge = new ReportingProcess<EdgeHealth, EdgeFinal>(`edge-${index}`, edgeScript, [
          broker!.url,
          GROUP,
          `edge-${index}`,
          HOST_ID,
          scratch,
          String(TAGS),
          String(PERIOD_MS),
        ]);
        processes.push(edge as ReportingProcess<unknown, unknown>);
        return edge;
      });
      const caughtUp = (what: string): Promise<unknown> =>
        Promise.all(
          edges.map((edge) => edge.until(what, (health) => health.publishing && health.backlogSamples === 0, 90_000)),
        );
      phase("host online; starting the edge nodes");
      await caughtUp("births out");
      const ups = edges.map((edge) => edge.firstReportAt! - began);
      phase(`every edge node publishing (processes up from +${Math.min(...ups)} to +${Math.max(...ups)} ms)`);
      const started = Date.now() - began;
      await hold(STRETCH_MS);

      // The broker crashes (SIGKILL: no Wills, retained STATE gone) and comes back on its port.
      await broker.kill();
      phase("broker killed");
      await hold(STRETCH_MS);
      await broker.restart();
      phase("broker restarted");
      await host.until("STATE online again", (health) => health.online, 60_000);
      await caughtUp("backlog replayed after the broker restart");
      const brokerRecovered = Date.now() - began;
      phase("every edge node caught up");
      await hold(STRETCH_MS);

      // The host crashes (SIGKILL: the broker publishes its Will, STATE offline) and a new one starts.
      const killedHost = host;
      await host.kill();
      phase("host killed");
      await hold(STRETCH_MS);
      host = startHost();
      await host.until("STATE online", (health) => health.online, 60_000);
      phase("new host online");
      await caughtUp("backlog replayed after the host restart");
      const hostRecovered = Date.now() - began;
      phase("every edge node caught up");
      await hold(STRETCH_MS);
      // What the host holds of edge nodes it is verifying (after one of its holds) is stored once
      // their NBIRTHs answer (ADR 0043, amendment fix19z); an edge node that stops first keeps it
      // unacknowledged, and this case does not start it again. So the window ends with none held.
      await host.until("no data held unverified", (health) => health.samples.held === 0, 60_000);

      phase("stopping the edge nodes");
      const finals = await Promise.all(edges.map((edge) => edge.finish()));
      phase("edge nodes stopped");
      await host.until(
        "every edge node's death, nothing queued",
        (health) =>
          health.samples.queued === 0 &&
          Object.keys(health.edgeNodes).length === EDGE_NODES &&
          Object.values(health.edgeNodes).every((node) => node.state === "offline"),
        60_000,
      );
      const hostFinal = await host.finish();
      phase("host stopped");
      const counts = await countWindows(database, finals);
      const live = await latencies(scratch, "live");
      const historical = await latencies(scratch, "historical");
      const droppedByKiln = finals.reduce((sum, final) => sum + final.samplesDropped, 0);
      const figures = {
        case: "sparkplug-fleet",
        edgeNodes: EDGE_NODES,
        tags: TAGS,
        periodMs: PERIOD_MS,
        stretchMs: STRETCH_MS,
        hostLagMs: HOST_LAG_MS,
        expected: counts.expected,
        stored: counts.stored,
        lost: counts.lost,
        duplicated: counts.duplicated,
        duplicates: counts.duplicates,
        restated: counts.restated,
        tagsWithLoss: counts.tagsWithLoss,
        missing: counts.missing,
        droppedByKiln,
        edgeStoredForForward: finals.reduce((sum, final) => sum + final.samplesStored, 0),
        edgeReplayed: finals.reduce((sum, final) => sum + final.samplesReplayed, 0),
        edgeAcknowledged: finals.reduce((sum, final) => sum + final.samplesAcknowledged, 0),
        edgeUnacknowledgedAtEnd: finals.reduce((sum, final) => sum + final.unacknowledgedSamples, 0),
        // Published by the end of the window and not acknowledged 20 s later: still in the edge
        // nodes' journals (sent again at their next start), so a loss up to this is data the host
        // discarded late, not data Kiln dropped.
        edgeWindowUnacknowledged: finals.reduce((sum, final) => sum + final.windowUnacknowledged, 0),
        // The killed host's last report (250 ms at most before the kill), then the second host's final one.
        killedHost: hostSummary(killedHost.last),
        secondHost: hostSummary(hostFinal),
        latencyLiveMs: { samples: live.length, p50: percentile(live, 0.5), p99: percentile(live, 0.99) },
        latencyHistoricalMs: {
          samples: historical.length,
          p50: percentile(historical, 0.5),
          p99: percentile(historical, 0.99),
        },
        startedAtMs: started,
        brokerRecoveredAtMs: brokerRecovered,
        hostRecoveredAtMs: hostRecovered,
        runMs: Date.now() - began,
      };
      console.log(JSON.stringify(figures));
      report("sparkplug-fleet", { lost: counts.lost, duplicated: counts.duplicated, droppedByKiln });

      expect(finals.every((final) => final.published)).toBe(true);
      expect(droppedByKiln).toBe(0);
      expect(counts.duplicated).toBe(0);
      expect(counts.lost).toBe(droppedByKiln);
    }, 300_000);
  },
);
