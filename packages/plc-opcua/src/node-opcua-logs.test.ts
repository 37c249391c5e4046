import type { Logger } from "@kiln/core";
import { make_debugLog, make_errorLog, make_warningLog, setDebugFlag, setLogLevel, LogLevel } from "node-opcua-debug";
import { afterEach, describe, expect, test, vi } from "vitest";
import { routeNodeOpcuaLogs } from "./node-opcua-logs";

interface Entry {
  readonly level: string;
  readonly bindings: Record<string, unknown>;
  readonly fields: Record<string, unknown>;
  readonly message: string;
}

function capturingLogger(entries: Entry[], bindings: Record<string, unknown> = {}): Logger {
  const at =
    (level: string) =>
    (fields: Record<string, unknown>, message?: string): void => {
      entries.push({ level, bindings, fields, message: message ?? "" });
    };
  return {
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    child: (more) => capturingLogger(entries, { ...bindings, ...more }),
  } as Logger;
}

afterEach(() => {
  vi.restoreAllMocks();
});

// node-opcua's own logging functions, as its client and server modules make them.
const warningLog = make_warningLog("test");
const errorLog = make_errorLog("test");

describe("routeNodeOpcuaLogs", () => {
  test("node-opcua's warnings and errors go to the Logger, without colours, and not to the console", async () => {
    const entries: Entry[] = [];
    const console = vi.spyOn(globalThis.console, "log");
    await routeNodeOpcuaLogs(capturingLogger(entries));
    warningLog("\u001b[36mcertificate\u001b[39m will expire in %d days", 12);
    errorLog("session", { id: 3 }, "closed");
    expect(console).not.toHaveBeenCalled();
    expect(entries.map(({ level, message }) => ({ level, message }))).toEqual([
      { level: "warn", message: "certificate will expire in 12 days" },
      { level: "error", message: "session { id: 3 } closed" },
    ]);
    for (const entry of entries) {
      expect(entry.bindings).toEqual({ component: "node-opcua" });
      expect(entry.fields.source).toMatch(/^node-opcua-logs\.test:\d+$/);
    }
  });

  test("at most 100 lines per call site, then one line saying the rest are dropped; other sites go on", async () => {
    const entries: Entry[] = [];
    await routeNodeOpcuaLogs(capturingLogger(entries));
    for (let index = 0; index < 150; index++) warningLog("flood", index);
    warningLog("another site");
    const flood = entries.filter((entry) => entry.message.startsWith("flood"));
    expect(flood).toHaveLength(100);
    expect(flood.at(-1)!.message).toBe("flood 99");
    expect(entries.filter((entry) => entry.message.includes("the rest are dropped"))).toHaveLength(1);
    expect(entries.at(-1)!.message).toBe("another site");
  });

  test("debug output, when node-opcua's debug flag is on for a module, arrives at debug level", async () => {
    const entries: Entry[] = [];
    await routeNodeOpcuaLogs(capturingLogger(entries));
    const file = "/x/kiln_debug_probe.js";
    setDebugFlag(file, true);
    setLogLevel(LogLevel.Debug);
    try {
      make_debugLog(file)("chunk", 7);
    } finally {
      setDebugFlag(file, false);
      setLogLevel(LogLevel.Warning);
    }
    expect(entries).toEqual([expect.objectContaining({ level: "debug", message: "chunk 7" })]);
  });

  test("a later call routes to its logger instead", async () => {
    const first: Entry[] = [];
    const second: Entry[] = [];
    await routeNodeOpcuaLogs(capturingLogger(first));
    await routeNodeOpcuaLogs(capturingLogger(second));
    warningLog("to the second");
    expect(first).toEqual([]);
    expect(second.map((entry) => entry.message)).toEqual(["to the second"]);
  });
});
