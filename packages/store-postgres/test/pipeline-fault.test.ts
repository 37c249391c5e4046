import { createControlSystem, defineTags, SimulatedPlc } from "@kiln/core";
import pg from "pg";
import { afterAll, beforeAll, expect, test } from "vitest";
import { PostgresStore } from "../src/index";
import { NEEDS_SERVER, databaseUrl, uniqueSchema } from "./support/database";

const TAGS = 200;
const definitions = Object.fromEntries(
  Array.from({ length: TAGS }, (_, index) => [`seq.${index}`, { dataType: "uint32" as const }]),
);
const tags = defineTags(definitions);
const schema = uniqueSchema("kiln_fault");
let admin: pg.Client | undefined;

beforeAll(async () => {
  if (!databaseUrl) return;
  admin = new pg.Client({ connectionString: databaseUrl });
  await admin.connect();
});

afterAll(async () => {
  await admin?.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await admin?.end();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test.skipIf(!databaseUrl)(
  `terminating the store's connections mid-ingest loses and duplicates no sample ${NEEDS_SERVER}`,
  async () => {
    const applicationName = `kiln-fault-${process.pid}`;
    const pool = new pg.Pool({ connectionString: databaseUrl, application_name: applicationName, max: 4 });
    // An idle pooled connection that is terminated emits "error"; the pool replaces it.
    pool.on("error", () => undefined);
    const store = new PostgresStore({ pool, schema });
    // Every tag counts 0, 1, 2... one step per scan: the value is the tag's sequence number.
    const plc = new SimulatedPlc({
      tags,
      sources: Object.fromEntries(tags.names.map((name) => [name, { kind: "counter" as const }])),
    });
    const system = createControlSystem({
      machineId: "fault-test",
      tags,
      driver: plc,
      store,
      // No staleness marking: on a loaded machine a 10 ms scan can run 30 ms late, and the stale
      // sweep would log the last value again (uncertain, new timestamp), which this test would count as a duplicate.
      scanGroups: { default: { periodMs: 10, staleAfterPeriods: 0 } },
      logging: {
        maxBatchSize: 200,
        maxLatencyMs: 50,
        writeTimeoutMs: 5_000,
        retry: { initialDelayMs: 20, maxDelayMs: 200 },
        breaker: { failureThreshold: 20, recoveryTimeMs: 200 },
      },
    });
    const failures: unknown[] = [];
    system.bus.on("batch-flush-fail", (event) => void failures.push(event.error));
    await system.start();

    let terminated = 0;
    for (let round = 0; round < 20; round++) {
      await sleep(100);
      const result = await admin!.query<{ count: string }>(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1) AS killed",
        [applicationName],
      );
      terminated += Number(result.rows[0]?.count ?? 0);
    }
    await sleep(300);
    await system.stop();
    await pool.end();
    const health = system.health().logging;

    const counts = await admin!.query<{ tag: string; samples: string; distinct_values: string; max: string }>(
      `SELECT t.name AS tag, count(*) AS samples, count(DISTINCT coalesce(s.value_float, s.value_int)) AS distinct_values, max(coalesce(s.value_float, s.value_int)) AS max
         FROM "${schema}".samples s JOIN "${schema}".tags t ON t.id = s.tag_id GROUP BY t.name ORDER BY t.name`,
    );
    console.log(`fault test: ${terminated} connections terminated, ${failures.length} failed flushes retried`);
    expect(terminated).toBeGreaterThan(0);
    expect(failures.length).toBeGreaterThan(0); // the faults hit writes in flight, which were retried
    expect(health.samplesDropped).toBe(0);
    expect(health.samplesOut).toBeGreaterThanOrEqual(health.samplesIn);
    expect(counts.rows).toHaveLength(TAGS);
    for (const row of counts.rows) {
      // Every sequence number 0..max is there, exactly once.
      expect(Number(row.samples)).toBe(Number(row.max) + 1);
      expect(Number(row.distinct_values)).toBe(Number(row.samples));
    }
    const logged = counts.rows.reduce((sum, row) => sum + Number(row.samples), 0);
    expect(logged).toBe(health.samplesIn);
    console.log(`fault test: all ${logged} samples stored exactly once`);
  },
  60_000,
);
