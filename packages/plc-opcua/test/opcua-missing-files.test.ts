import { copyFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { createControlSystem, defineTags, KilnError, MemoryStore } from "@kiln/core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { OPCUA_SIMULATOR_NAMESPACE_URI, OpcuaDriver, OpcuaSimulator, type OpcuaDriverOptions } from "../src/index";

// Issue 13, adv13 (fresh review) MEDIUM-2: a certificate or key file named in the options that
// did not exist failed connect() KILN_CONNECTION_FAILED, retryable, without the option's name, so
// the control system re-dialled it forever (38 status changes in 12 s). Now the files are read at
// each connect before anything is dialled, and one that cannot be read is KILN_VALIDATION, not
// retryable, at its field path (docs/adr/0022, amendment fix13d).
const tags = defineTags({
  r: { dataType: "int32", address: `nsu=${OPCUA_SIMULATOR_NAMESPACE_URI};s=Kiln.R` },
});

let workDir: string;
let simulator: OpcuaSimulator;
beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-missing-files-"));
  simulator = new OpcuaSimulator({ tags, signals: {}, securityModes: ["None"], pkiDir: path.join(workDir, "server") });
  await simulator.start();
});
afterAll(async () => {
  await simulator.dispose();
  await rm(workDir, { recursive: true, force: true });
});

const driverWith = (extra: Partial<OpcuaDriverOptions>): OpcuaDriver =>
  new OpcuaDriver({
    endpointUrl: simulator.endpointUrl,
    security: { mode: "None" },
    pki: { dir: path.join(workDir, "client") },
    timeouts: { keepAliveMs: 1_000, requestMs: 5_000 },
    ...extra,
  });

async function connectError(driver: OpcuaDriver): Promise<KilnError> {
  const error = await driver.connect().then(
    () => undefined,
    (caught: unknown) => caught,
  );
  await driver.close();
  if (!KilnError.is(error)) throw new Error(`expected a KilnError, got ${String(error)}`);
  return error;
}

describe("a file named in the options that cannot be read (adv13 fresh review MEDIUM-2)", () => {
  test("a missing trusted server certificate: KILN_VALIDATION at pki.trustedServerCertificates[1], not retryable", async () => {
    const missing = path.join(workDir, "nope", "server.pem");
    const error = await connectError(
      driverWith({
        pki: { dir: path.join(workDir, "client"), trustedServerCertificates: [simulator.certificateFile, missing] },
      }),
    );
    expect(error).toMatchObject({
      code: "KILN_VALIDATION",
      retryable: false,
      details: { issues: [{ path: "pki.trustedServerCertificates[1]" }] },
    });
    expect(error.message).toContain(missing);
    expect(error.message).toContain("ENOENT");
  }, 30_000);

  test("sibling: missing identity certificate and key: both fields named; the control system does not re-dial", async () => {
    const identity = {
      type: "certificate" as const,
      certificateFile: path.join(workDir, "nope", "user.pem"),
      privateKeyFile: path.join(workDir, "nope", "user.key"),
    };
    const error = await connectError(driverWith({ identity }));
    expect(error).toMatchObject({ code: "KILN_VALIDATION", retryable: false });
    expect((error.details.issues as { path: string }[]).map((issue) => issue.path)).toEqual([
      "identity.certificateFile",
      "identity.privateKeyFile",
    ]);

    const driver = driverWith({ identity });
    let changes = 0;
    driver.onStatusChange(() => changes++);
    const system = createControlSystem({
      machineId: "fix13d",
      tags,
      store: new MemoryStore(),
      driver,
      scanGroups: { default: { periodMs: 500 } },
      acquisition: { reconnect: { initialDelayMs: 100, maxDelayMs: 500 } },
    });
    await expect(system.start()).rejects.toMatchObject({ code: "KILN_VALIDATION" });
    const after = changes;
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(changes).toBe(after);
    await system.stop().catch(() => undefined);
  }, 30_000);

  test("sibling: a file provisioned after a failed connect is read at the next connect", async () => {
    const later = path.join(workDir, "later.pem");
    const driver = driverWith({ pki: { dir: path.join(workDir, "client"), trustedServerCertificates: [later] } });
    const first = await driver.connect().then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(first).toMatchObject({ code: "KILN_VALIDATION" });
    await copyFile(simulator.certificateFile, later);
    await driver.connect();
    expect(driver.status).toBe("connected");
    await driver.close();
  }, 30_000);
});
