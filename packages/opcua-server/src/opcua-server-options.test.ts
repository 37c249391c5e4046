import { createControlSystem, defineTags, KilnValidationError } from "@kiln/core";
import { describe, expect, test } from "vitest";
import { OpcuaServer, type OpcuaServerOptions } from "./index";

const tags = defineTags({ "chamber.pressure": { dataType: "float64" } });
const system = createControlSystem({ machineId: "reactor-1", tags });
const valid: OpcuaServerOptions = { pki: { dir: "/tmp/kiln-pki" }, identify: () => undefined };

function issuesOf(options: unknown): string[] {
  try {
    new OpcuaServer(system, options as OpcuaServerOptions);
  } catch (error) {
    if (error instanceof KilnValidationError) return error.issues.map((issue) => issue.path);
    throw error;
  }
  throw new Error("expected a KilnValidationError");
}

describe("OpcuaServer options", () => {
  test("valid options construct a server that has not started", () => {
    const server = new OpcuaServer(system, valid);
    expect(server.running).toBe(false);
    expect(server.namespaceUri).toBe("urn:kiln:machine:reactor-1");
    expect(() => server.endpointUrl).toThrow(expect.objectContaining({ code: "KILN_LIFECYCLE" }));
    expect(() => server.nodeIdOf("chamber.pressure")).toThrow(expect.objectContaining({ code: "KILN_LIFECYCLE" }));
    expect(() => server.nodeIdOf("nope")).toThrow(expect.objectContaining({ code: "KILN_TAG_UNKNOWN" }));
  });

  test("a system with array tags is refused at construction until arrays are served (ADR 0038)", () => {
    const withArrays = createControlSystem({
      machineId: "reactor-2",
      tags: defineTags({
        "chamber.pressure": { dataType: "float64" },
        "zones.temperature": { dataType: "float64", arrayLength: 8 },
      }),
    });
    let caught: unknown;
    try {
      new OpcuaServer(withArrays, valid);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(KilnValidationError);
    expect((caught as KilnValidationError).issues.map((issue) => issue.path)).toEqual([
      "tags.zones.temperature.arrayLength",
    ]);
  });

  test("bad options are refused with KILN_VALIDATION naming each field", () => {
    expect(issuesOf({ ...valid, port: 70_000 })).toEqual(["port"]);
    expect(issuesOf({ ...valid, port: 1.5 })).toEqual(["port"]);
    expect(issuesOf({ identify: valid.identify })).toEqual(["pki"]);
    expect(issuesOf({ ...valid, pki: { dir: "" } })).toEqual(["pki.dir"]);
    expect(issuesOf({ pki: valid.pki })).toEqual(["identify"]);
    expect(issuesOf({ ...valid, securityModes: [] })).toEqual(["securityModes"]);
    expect(issuesOf({ ...valid, securityModes: ["Plain"] })).toEqual(["securityModes[0]"]);
    expect(issuesOf({ ...valid, securityPolicies: ["Basic128Rsa15"] })).toEqual(["securityPolicies[0]"]);
    expect(issuesOf({ ...valid, allowAnonymous: "yes" })).toEqual(["allowAnonymous"]);
    expect(issuesOf({ ...valid, portt: 4840 })).toEqual([""]);
    expect(issuesOf({ ...valid, limits: { maxSessions: 0 } })).toEqual(["limits.maxSessions"]);
    expect(issuesOf({ ...valid, limits: { maxMonitoredItemsPerSession: 2.5 } })).toEqual([
      "limits.maxMonitoredItemsPerSession",
    ]);
    expect(issuesOf({ ...valid, limits: { maxItems: 5 } })).toEqual(["limits"]);
    // The transport and work bounds: a message smaller than 128 KiB could not carry a session's own answers.
    expect(
      issuesOf({
        ...valid,
        limits: {
          maxMessageSize: 1_000,
          maxChunkCount: 0,
          maxReferencesPerBrowse: 0,
          maxEventFilterOperands: 5_000,
          maxEventFilterSelectClauses: 0,
          maxEventFilterCostPerSession: 1.5,
        },
      }),
    ).toEqual([
      "limits.maxEventFilterOperands",
      "limits.maxEventFilterSelectClauses",
      "limits.maxEventFilterCostPerSession",
      "limits.maxReferencesPerBrowse",
      "limits.maxMessageSize",
      "limits.maxChunkCount",
    ]);
  });

  test("certificate files must exist and come as a pair", () => {
    expect(
      issuesOf({ ...valid, certificateFile: "/nonexistent/cert.pem", privateKeyFile: "/nonexistent/key.pem" }),
    ).toEqual(["certificateFile", "privateKeyFile"]);
    expect(issuesOf({ ...valid, certificateFile: import.meta.filename })).toEqual(["privateKeyFile"]);
  });

  test("a server needs a control system", () => {
    expect(() => new OpcuaServer({} as never, valid)).toThrow(TypeError);
  });
});
