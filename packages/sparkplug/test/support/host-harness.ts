import { randomBytes } from "node:crypto";
import { PGlite } from "@electric-sql/pglite";
import type { Sample } from "@kiln/core";
import { PostgresStore } from "@kiln/store-postgres";
import mqtt, { type MqttClient } from "mqtt";
import pg from "pg";
import { decodePayload, encodePayload, type SparkplugMetric, type SparkplugPayload } from "../../src/payload";
import { sparkplugTopic } from "../../src/topic";

/** The PostgreSQL server of the run (DATABASE_URL), else none: the tests use embedded PGlite. */
export const databaseUrl: string | undefined = process.env.DATABASE_URL || undefined;

/** A PostgreSQL store on a schema of its own, on the server at DATABASE_URL or on PGlite. */
export interface TestDatabase {
  readonly kind: "server" | "pglite";
  readonly store: PostgresStore;
  /** Every stored sample of `tag`, oldest first. */
  samples(tag: string): Promise<Sample[]>;
  /** The stored metadata of a tag, or undefined when it has no row. */
  tag(
    name: string,
  ): Promise<
    { data_type: string | null; unit: string | null; range_min: number | null; range_max: number | null } | undefined
  >;
  /** Rows in the samples table. */
  count(): Promise<number>;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Opens a store on a new schema (dropped at close). */
export async function openTestDatabase(): Promise<TestDatabase> {
  const schema = `kiln_sphost_${process.pid}_${randomBytes(4).toString("hex")}`;
  let pool: pg.Pool | undefined;
  let pglite: PGlite | undefined;
  let store: PostgresStore;
  if (databaseUrl !== undefined) {
    pool = new pg.Pool({ connectionString: databaseUrl, max: 4 });
    store = new PostgresStore({ pool, schema });
  } else {
    pglite = await PGlite.create();
    store = new PostgresStore({ pglite, schema });
  }
  await store.open([]);
  const sql = async <TRow>(text: string, parameters: unknown[] = []): Promise<TRow[]> =>
    pool ? ((await pool.query(text, parameters)).rows as TRow[]) : (await pglite!.query<TRow>(text, parameters)).rows;
  const close = async (): Promise<void> => {
    await store.close();
    if (pool) {
      await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await pool.end();
    }
    await pglite?.close();
  };
  return {
    kind: pool ? "server" : "pglite",
    store,
    samples: (tag) => store.samples.readSamples({ tag, from: 0, to: 4_102_444_799_999 }),
    tag: async (name) =>
      (
        await sql<{
          data_type: string | null;
          unit: string | null;
          range_min: number | null;
          range_max: number | null;
        }>(`SELECT data_type, unit, range_min, range_max FROM "${schema}".tags WHERE name = $1`, [name])
      )[0],
    count: async () => Number((await sql<{ n: string }>(`SELECT count(*) AS n FROM "${schema}".samples`))[0]!.n),
    close,
    [Symbol.asyncDispose]: close,
  };
}

/**
 * A raw MQTT.js client acting as a Sparkplug edge node, for tests of a host: it sends exactly
 * what a test asks for (births, data with any seq, deaths), so the host's checks can be driven.
 */
export class RawEdgeNode {
  readonly client: MqttClient;
  readonly groupId: string;
  readonly edgeNodeId: string;
  /** The seq of the next message (set it to make a gap). */
  seq = 0;
  /** The QoS of its births, data and DDEATHs (a broker bounds the QoS 1 messages in flight to a client). */
  qos: 0 | 1 = 0;

  private constructor(client: MqttClient, groupId: string, edgeNodeId: string) {
    this.client = client;
    this.groupId = groupId;
    this.edgeNodeId = edgeNodeId;
  }

  /**
   * Connects with NDEATH (bdSeq) as the Will, QoS 1, not retained (`retainWill`: retained, as a
   * non-conformant edge node does); MQTT 3.1.1 unless `protocolVersion` says 5. `deathPayload`:
   * the Will's payload as given (Eclipse Tahu's sparkplug-client builds it once, with bdSeq 0 and
   * one timestamp, and sends the same bytes in every session).
   */
  static async connect(
    url: string,
    groupId: string,
    edgeNodeId: string,
    bdSeq = 0,
    options: { protocolVersion?: 4 | 5; retainWill?: boolean; deathPayload?: Uint8Array } = {},
  ): Promise<RawEdgeNode> {
    const client = await mqtt.connectAsync(url, {
      clean: true,
      reconnectPeriod: 0,
      ...(options.protocolVersion === undefined ? {} : { protocolVersion: options.protocolVersion }),
      will: {
        topic: sparkplugTopic({ type: "NDEATH", groupId, edgeNodeId }),
        payload: Buffer.from(options.deathPayload ?? RawEdgeNode.deathBytes(bdSeq)),
        qos: 1,
        retain: options.retainWill ?? false,
      },
    });
    return new RawEdgeNode(client, groupId, edgeNodeId);
  }

  static deathBytes(bdSeq: number): Uint8Array {
    return encodePayload({
      timestamp: Date.now(),
      metrics: [{ name: "bdSeq", timestamp: Date.now(), datatype: "Int64", value: bdSeq }],
    });
  }

  #nextSeq(): number {
    const seq = this.seq;
    this.seq = (this.seq + 1) % 256;
    return seq;
  }

  async #publish(topic: string, payload: SparkplugPayload, omitDatatype = false): Promise<void> {
    await this.client.publishAsync(topic, Buffer.from(encodePayload(payload, { omitDatatype })), { qos: this.qos });
  }

  /** NBIRTH with seq 0, bdSeq, `Node Control/Rebirth` and `metrics`. */
  async nbirth(bdSeq: number, metrics: readonly SparkplugMetric[] = []): Promise<void> {
    this.seq = 0;
    const now = Date.now();
    await this.#publish(sparkplugTopic({ type: "NBIRTH", groupId: this.groupId, edgeNodeId: this.edgeNodeId }), {
      timestamp: now,
      seq: this.#nextSeq(),
      metrics: [
        { name: "bdSeq", timestamp: now, datatype: "Int64", value: bdSeq },
        { name: "Node Control/Rebirth", timestamp: now, datatype: "Boolean", value: false },
        ...metrics,
      ],
    });
  }

  async dbirth(deviceId: string, metrics: readonly SparkplugMetric[]): Promise<void> {
    await this.#publish(
      sparkplugTopic({ type: "DBIRTH", groupId: this.groupId, edgeNodeId: this.edgeNodeId, deviceId }),
      {
        timestamp: Date.now(),
        seq: this.#nextSeq(),
        metrics,
      },
    );
  }

  /** DDATA by alias (datatypes left off the wire). */
  async ddata(deviceId: string, metrics: readonly SparkplugMetric[]): Promise<void> {
    await this.#publish(
      sparkplugTopic({ type: "DDATA", groupId: this.groupId, edgeNodeId: this.edgeNodeId, deviceId }),
      { timestamp: Date.now(), seq: this.#nextSeq(), metrics },
      true,
    );
  }

  async ndata(metrics: readonly SparkplugMetric[]): Promise<void> {
    await this.#publish(
      sparkplugTopic({ type: "NDATA", groupId: this.groupId, edgeNodeId: this.edgeNodeId }),
      { timestamp: Date.now(), seq: this.#nextSeq(), metrics },
      true,
    );
  }

  async ddeath(deviceId: string, timestamp = Date.now()): Promise<void> {
    await this.#publish(
      sparkplugTopic({ type: "DDEATH", groupId: this.groupId, edgeNodeId: this.edgeNodeId, deviceId }),
      {
        timestamp,
        seq: this.#nextSeq(),
        metrics: [],
      },
    );
  }

  /** NDEATH with `bdSeq`, as an edge node publishes it before an intentional disconnect (QoS 1). */
  async ndeath(bdSeq: number): Promise<void> {
    await this.client.publishAsync(
      sparkplugTopic({ type: "NDEATH", groupId: this.groupId, edgeNodeId: this.edgeNodeId }),
      Buffer.from(RawEdgeNode.deathBytes(bdSeq)),
      { qos: 1 },
    );
  }

  /**
   * Answers every NCMD `Node Control/Rebirth` (true) with `answer` (its births), as an edge node
   * does, one answer at a time in the order asked; resolves once subscribed. A host may ask at any
   * moment (a hold's end, a gap): a test that answers only when it saw the request races it.
   */
  async answerRebirths(answer: () => Promise<void>): Promise<void> {
    const topic = sparkplugTopic({ type: "NCMD", groupId: this.groupId, edgeNodeId: this.edgeNodeId });
    let answering = Promise.resolve();
    this.client.on("message", (received, bytes) => {
      if (received !== topic) return;
      const asked = decodePayload(bytes).metrics.some(
        (metric) => metric.name === "Node Control/Rebirth" && metric.value === true,
      );
      if (asked) answering = answering.then(answer, answer).catch(() => undefined);
    });
    await this.client.subscribeAsync(topic, { qos: 1 });
  }

  async close(): Promise<void> {
    await this.client.endAsync(true);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Polls `condition` every 10 ms until it holds, else fails after `timeoutMs` naming `what` (a function: said as it stands then). */
export async function eventually<T>(
  condition: () => T | Promise<T>,
  timeoutMs = 5_000,
  what: string | (() => string) = "condition",
): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (Date.now() > until)
      throw new Error(`${typeof what === "string" ? what : what()} did not hold within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
