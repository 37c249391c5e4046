// @kiln/sparkplug/testing: real MQTT brokers on loopback and a recording client, for the tests
// of an edge node, a host application, or an application built on them.
export {
  freePort,
  mosquittoAvailability,
  mosquittoPath,
  startAedes,
  startMosquitto,
  startTestBroker,
  type TestBroker,
} from "./brokers";
export { recordSparkplug, type RecordedMessage, type SparkplugRecorder } from "./recorder";
export { startMqttTap, type MqttTap, type TappedPacket } from "./mqtt-tap";
