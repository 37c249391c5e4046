// @kiln/sparkplug: Eclipse Sparkplug B 3.0 for Kiln. Tests import "@kiln/sparkplug/testing".
export {
  SPARKPLUG_DATA_TYPES,
  sparkplugDataTypeOf,
  sparkplugDataTypeOfTag,
  tagDataTypeOfSparkplug,
  type SparkplugDataType,
  type SparkplugMetricDataType,
  type SparkplugPropertyDataType,
  type SparkplugScalarDataType,
} from "./datatypes";
export {
  decodePayload,
  encodePayload,
  type DecodeOptions,
  type EncodeOptions,
  type SparkplugDataSet,
  type SparkplugMetaData,
  type SparkplugMetric,
  type SparkplugPayload,
  type SparkplugPropertySet,
  type SparkplugPropertyValue,
  type SparkplugScalarValue,
  type SparkplugTemplate,
  type SparkplugTemplateParameter,
  type SparkplugValue,
} from "./payload";
export {
  DEVICE_MESSAGE_TYPES,
  NODE_MESSAGE_TYPES,
  SPARKPLUG_NAMESPACE,
  checkSparkplugIds,
  parseSparkplugTopic,
  sparkplugIdProblem,
  sparkplugTopic,
  type DeviceMessageType,
  type NodeMessageType,
  type SparkplugTopic,
} from "./topic";
export { decodeHostState, encodeHostState, type SparkplugHostState } from "./host-state";
export { fileBdSeqStore, memoryBdSeqStore, type BdSeqStore } from "./bdseq-store";
export {
  AWAIT_ACKS_METRIC,
  BDSEQ_METRIC,
  MACHINE_STATE_METRIC,
  MESSAGE_NUMBER_METRIC,
  METRIC_PROPERTIES,
  REBIRTH_METRIC,
  STORED_THROUGH_METRIC,
  SparkplugEdgeNode,
  type SparkplugAcknowledgementHealth,
  type SparkplugEdgeNodeEvents,
  type SparkplugEdgeNodeHealth,
  type SparkplugEdgeNodeOptions,
  type SparkplugStoreAndForwardHealth,
  type SparkplugStoreAndForwardOptions,
} from "./edge-node";
export {
  SparkplugHost,
  type SparkplugHostEdgeNodeHealth,
  type SparkplugHostEvents,
  type SparkplugHostHealth,
  type SparkplugHostLimit,
  type SparkplugHostLimits,
  type SparkplugHostOptions,
  type SparkplugLiveMetric,
  type SparkplugRebirthReason,
} from "./host";
export type { SparkplugHostBatching } from "./host-sample-writer";
export { SPARKPLUG_QUALITY, qualityOfMetric } from "./host-samples";
export { parseQualifiedTagName, qualifiedTagName, type SparkplugMetricAddress } from "./host-tag-names";
