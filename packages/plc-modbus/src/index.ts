export {
  MODBUS_AREAS,
  MODBUS_BYTE_ORDERS,
  MODBUS_MAX_STRING_REGISTERS,
  MODBUS_WIRE_TYPES,
  formatModbusAddress,
  isBitArea,
  isWritableArea,
  modbusAddressObjectSchema,
  modbusAddressSchema,
  modbusTagAddress,
  parseModbusAddress,
  registerCount,
  type ModbusAddress,
  type ModbusAddressInput,
  type ModbusAddressSpec,
  type ModbusArea,
  type ModbusByteOrder,
  type ModbusWireType,
} from "./modbus-address";
export {
  loadSerialSupport,
  type ModbusClient,
  type ModbusSerialOptions,
  type ModbusStrayAnswer,
  type SerialPortConstructor,
} from "./modbus-client";
export {
  decodeRegisters,
  encodeRegisters,
  engineeringFromRaw,
  rawFromEngineering,
  type ModbusCodecAddress,
  type ModbusRawValue,
  type RawConversionOptions,
} from "./modbus-codec";
export { ModbusDriver } from "./modbus-driver";
export {
  type ModbusDriverOptions,
  type ModbusPlannerOptions,
  type ModbusReconnectOptions,
  type ModbusRtuTransport,
  type ModbusTcpTransport,
  type ModbusTransport,
  type ModbusUnitHealthOptions,
  type ModbusWriteOptions,
} from "./modbus-driver-options";
export { ModbusExceptions, modbusFailureOf, qualityFromModbus, type ModbusFailure } from "./modbus-failure";
export {
  MODBUS_READ_LIMIT_DEFAULTS,
  ModbusReadPlanner,
  planModbusReads,
  splitModbusReadRequest,
  TRANSIENT_MODBUS_EXCEPTIONS,
  type ModbusAddressRange,
  type ModbusLearnedHole,
  type ModbusLearnedMap,
  type ModbusPlanSettings,
  type ModbusReadBarrier,
  type ModbusReadItem,
  type ModbusReadLimits,
  type ModbusReadPlan,
  type ModbusReadPlannerOptions,
  type ModbusReadRequest,
} from "./modbus-read-planner";
export {
  ModbusSimulator,
  type ModbusFaultTarget,
  type ModbusSimulatorOptions,
  type ModbusSimulatorRequest,
  type ModbusSimulatorStats,
} from "./modbus-simulator";
export {
  type ModbusAnswerStream,
  type ModbusAnswerStreamChange,
  type ModbusUnitHealth,
  type ModbusUnitStatusChange,
} from "./modbus-unit-health";
