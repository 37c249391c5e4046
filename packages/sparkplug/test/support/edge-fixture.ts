import {
  SimulatedPlc,
  createControlSystem,
  defineTags,
  type ControlSystem,
  type Principal,
  type Sample,
} from "@kiln/core";
import {
  SparkplugEdgeNode,
  memoryBdSeqStore,
  sparkplugDataTypeOfTag,
  type BdSeqStore,
  type SparkplugEdgeNodeOptions,
  type SparkplugMetric,
} from "../../src/index";
import {
  recordSparkplug,
  startMqttTap,
  startTestBroker,
  type MqttTap,
  type RecordedMessage,
  type SparkplugRecorder,
  type TestBroker,
} from "../../src/testing/index";

export const GROUP = "plant-1";
export const EDGE = "line-3";
export const DEVICE = "ald-1";
export const HOST = "scada";

export const tags = defineTags({
  "chamber.pressure": {
    dataType: "float64",
    unit: "mbar",
    range: { min: 0, max: 10 },
    description: "Chamber pressure",
    scanGroup: "fast",
  },
  "valve.ald1": { dataType: "bool", access: "readwrite", scanGroup: "fast" },
  "heater.setpoint": { dataType: "float32", access: "readwrite", range: { min: 0, max: 400 }, unit: "°C" },
  "counter.total": { dataType: "uint64" },
  "recipe.name": { dataType: "string" },
});

/** A broker, a tap in front of it for the node, a running system, a recorder, and an edge node (not started). */
export interface EdgeFixture {
  readonly broker: TestBroker;
  readonly tap: MqttTap;
  readonly system: ControlSystem;
  readonly plc: SimulatedPlc;
  readonly recorder: SparkplugRecorder;
  readonly node: SparkplugEdgeNode;
  /** Every sample the CVT saw that changed a value or a quality (what DDATA carries), in order. */
  readonly samples: Sample[];
  /** A new node on the same system and broker (for restart tests). */
  newNode(options?: Partial<SparkplugEdgeNodeOptions>): SparkplugEdgeNode;
  close(): Promise<void>;
}

export const engineer: Principal = { id: "sparkplug-host", roles: ["engineer"] };

export async function edgeFixture(
  options: {
    readonly primaryHostId?: string;
    readonly principal?: Principal;
    readonly fastPeriodMs?: number;
    readonly bdSeqStore?: BdSeqStore;
    readonly broker?: TestBroker;
    readonly tapProtocolVersion?: 4 | 5;
  } = {},
): Promise<EdgeFixture> {
  const broker = options.broker ?? (await startTestBroker());
  const tap = await startMqttTap(broker.port, { protocolVersion: options.tapProtocolVersion ?? 4 });
  const plc = new SimulatedPlc({
    tags,
    sources: {
      "chamber.pressure": { kind: "sine", offset: 2, amplitude: 1, periodMs: 1_000 },
      "counter.total": { kind: "constant", value: 2 ** 60 },
    },
  });
  const system = createControlSystem({
    machineId: DEVICE,
    tags,
    driver: plc,
    scanGroups: { fast: { periodMs: options.fastPeriodMs ?? 50 }, default: { periodMs: 200 } },
  });
  const samples: Sample[] = [];
  // What the edge node publishes: it leaves out observations that change neither value nor quality.
  system.cvt.observeAll((change) => {
    if (change.valueChanged || change.qualityChanged) samples.push(change.sample);
  });
  await system.start();
  await system.ready();
  const datatypes = new Map<number, SparkplugMetric["datatype"]>();
  const recorder = await recordSparkplug(broker.url, {
    decode: { datatypeOf: ({ alias }) => (alias === undefined ? undefined : datatypes.get(Number(alias))) },
  });
  const nodes: SparkplugEdgeNode[] = [];
  const newNode = (extra: Partial<SparkplugEdgeNodeOptions> = {}): SparkplugEdgeNode => {
    const node = new SparkplugEdgeNode({
      system,
      brokerUrl: tap.url,
      groupId: GROUP,
      edgeNodeId: EDGE,
      principal: options.principal ?? engineer,
      reconnect: { initialDelayMs: 50, maxDelayMs: 200 },
      ...(options.primaryHostId === undefined ? {} : { primaryHostId: options.primaryHostId }),
      // bdSeq from 0, as the compliance tests expect (a node given no store starts at a random one).
      bdSeqStore: options.bdSeqStore ?? memoryBdSeqStore(),
      ...extra,
    });
    for (const [name, alias] of node.aliases) datatypes.set(alias, sparkplugDataTypeOfTag(tags.get(name).dataType));
    datatypes.set(node.aliases.size + 1, "String");
    datatypes.set(node.aliases.size + 2, "UInt64");
    nodes.push(node);
    return node;
  };
  const node = newNode();
  return {
    broker,
    tap,
    system,
    plc,
    recorder,
    node,
    samples,
    newNode,
    close: async () => {
      for (const each of nodes) await each.stop();
      await recorder.close();
      await system.stop();
      await tap.close();
      if (options.broker === undefined) await broker.stop();
    },
  };
}

export const ofType =
  (type: string) =>
  (message: RecordedMessage): boolean =>
    message.parsed?.type === type;

/** The value of metric `name` in a recorded message's payload. */
export function metricValue(message: RecordedMessage, name: string): unknown {
  return message.payload?.metrics.find((metric) => metric.name === name)?.value;
}

/** Messages from the edge node (N* and D* topics of EDGE), in order. */
export function fromNode(recorder: SparkplugRecorder): RecordedMessage[] {
  return recorder.messages.filter(
    (message) =>
      message.parsed !== undefined &&
      message.parsed.type !== "STATE" &&
      message.parsed.edgeNodeId === EDGE &&
      !message.parsed.type.endsWith("CMD"),
  );
}
