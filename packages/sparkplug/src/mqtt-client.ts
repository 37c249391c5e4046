import type { IClientOptions, MqttClient } from "mqtt";

type Connect = (url: string, options: IClientOptions) => MqttClient;
let loading: Promise<Connect> | undefined;

/**
 * @internal MQTT.js's `connect`, loaded on first use rather than at import: MQTT.js loads
 * worker-timers, whose regenerator runtime defines `globalThis.regeneratorRuntime`, and importing
 * a Kiln package must change no global ("sideEffects": false). So the global appears only once a
 * node or a test client connects.
 */
export function mqttConnect(): Promise<Connect> {
  loading ??= import("mqtt").then((module) => {
    const named = (module as { connect?: Connect }).connect;
    return named ?? (module.default as unknown as { connect: Connect }).connect;
  });
  return loading;
}
