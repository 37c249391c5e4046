import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { defineTags } from "@kiln/core";
import { plcDriverConformance } from "@kiln/core/testing";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { OpcuaDriver, OpcuaSimulator } from "../src/index";
import { TcpProxy } from "./support/tcp-proxy";

// The PlcDriver contract every driver meets, against a real OPC UA server on loopback.
const tags = defineTags({
  "reactor.pressure": { dataType: "float64", address: "ns=2;s=Reactor.Pressure" },
  "reactor.count": { dataType: "int32", address: "ns=2;s=Reactor.Count" },
  "valve.open": { dataType: "bool", access: "readwrite", address: "ns=2;s=Valve.Open" },
  "reactor.setpoint": { dataType: "float64", access: "readwrite", address: "ns=2;s=Reactor.Setpoint" },
  "recipe.name": { dataType: "string", access: "readwrite", address: "ns=2;s=Recipe.Name" },
  "ghost.tag": { dataType: "float64", address: "ns=2;s=Ghost" },
});

let simulator: OpcuaSimulator;
let pkiDir: string;

beforeAll(async () => {
  pkiDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-conformance-"));
  simulator = new OpcuaSimulator({
    tags: tags.list().filter((tag) => tag.name !== "ghost.tag"),
    signals: { "reactor.pressure": { kind: "sine", amplitude: 1, offset: 2, periodMs: 2_000 } },
    updateIntervalMs: 50,
  });
  await simulator.start();
});

afterAll(async () => {
  await simulator?.dispose();
  await rm(pkiDir, { recursive: true, force: true });
});

let round = 0;
for (const subscribe of [true, false]) {
  plcDriverConformance({
    test,
    expect,
    describe,
    name: `OpcuaDriver on OpcuaSimulator (${subscribe ? "with" : "without"} subscriptions)`,
    capabilities: { subscribe: true, browse: true },
    groups: { subscribe },
    features: { missing: true, unreachable: true },
    factory: async () => {
      round++;
      // Through a TCP proxy that can stop forwarding the server's answers (the stall cases, fix13y):
      // the session stays open, requests reach the server, nothing comes back.
      const proxy = new TcpProxy(simulator.port);
      const endpointUrl = await proxy.start();
      // Each fixture writes values that differ from what the previous one left behind.
      return {
        // keepAliveMs 1000 (default 5000): the link stall bound, which also bounds close() on a
        // stalled link, is about 2 s instead of 10 s; each stall case closed its driver for 10 s.
        driver: new OpcuaDriver({
          endpointUrl,
          pki: { dir: pkiDir, trustedServerCertificates: [simulator.certificateFile] },
          timeouts: { keepAliveMs: 1_000 },
        }),
        readable: [tags.get("reactor.pressure"), tags.get("reactor.count"), tags.get("valve.open")],
        writable: [
          { tag: tags.get("valve.open"), value: round % 2 === 1 },
          { tag: tags.get("reactor.setpoint"), value: 100 + round },
          { tag: tags.get("recipe.name"), value: `ALD-${round}` },
        ],
        readOnly: tags.get("reactor.pressure"),
        missing: tags.get("ghost.tag"),
        change: async (tag, value) => simulator.setValue(tag.name, value),
        // Nothing listens on port 1; one attempt, no retries.
        unreachable: () =>
          new OpcuaDriver({
            endpointUrl: "opc.tcp://127.0.0.1:1",
            pki: { dir: pkiDir },
            connectionStrategy: { maxRetry: 0, initialDelayMs: 10, maxDelayMs: 20 },
          }),
        // Read-only on the server, declared writable here: the server refuses the write.
        rejectedWrite: { tag: { ...tags.get("reactor.pressure"), access: "readwrite" }, value: 1.5 },
        // A server restart: the channel drops (closing sessions only is repaired transparently).
        dropConnection: async () => {
          await simulator.stop();
          await simulator.start();
        },
        stall: () => proxy.muteServer(),
        cleanup: () => proxy.close(),
      };
    },
  });
}
