import { generateKeyPairSync } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { createControlSystem, defineTags, KilnError, MemoryStore } from "@kiln/core";
import { nodesets } from "node-opcua-nodesets";
import { OPCUAServer } from "node-opcua-server";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { OpcuaDriver, type OpcuaDriverOptions } from "../src/index";

// Issue 13, adv13 after fix13ae (MEDIUM-3): a file that could be read but held no certificate was
// retried forever as a retryable KILN_CONNECTION_FAILED with node-opcua's parse message and no
// field name (44 status changes in 5 s under the control system), and a private key listed in
// pki.trustedServerCertificates was written into pki/trusted/certs/ relabelled CERTIFICATE. Now the
// files are parsed at connect: KILN_VALIDATION at the field path, and nothing is copied
// (docs/adr/0022, amendment fix13af).
let workDir: string;
let server: OPCUAServer;
let endpointUrl: string;
/** A PKCS#8 private key file that is not the server's. */
let keyFile: string;
let garbageFile: string;

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-pki-content-"));
  server = new OPCUAServer({ port: 0, nodeset_filename: [nodesets.standard], allowAnonymous: true });
  await server.initialize();
  await server.start();
  endpointUrl = `opc.tcp://127.0.0.1:${(server as unknown as { endpoints: { port: number }[] }).endpoints[0]!.port}`;
  keyFile = path.join(workDir, "key.pem");
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  await writeFile(keyFile, privateKey.export({ type: "pkcs8", format: "pem" }) as string, { mode: 0o600 });
  garbageFile = path.join(workDir, "garbage.pem");
  await writeFile(garbageFile, "hello, not a certificate\n");
});

afterAll(async () => {
  await server.shutdown(0);
  await rm(workDir, { recursive: true, force: true });
});

const driverWith = (pkiDir: string, extra: Partial<OpcuaDriverOptions>): OpcuaDriver =>
  new OpcuaDriver({
    endpointUrl,
    security: { mode: "None" },
    pki: { dir: pkiDir },
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

/** Every file under `dir`, recursively, with its content; none when it does not exist. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return Promise.all(
    entries
      .filter((entry) => entry.isFile())
      .map((entry) => readFile(path.join(entry.parentPath, entry.name), "latin1")),
  );
}

describe("a file named in the options that is not what its field needs (adv13 MEDIUM-3)", () => {
  test("a private key listed as a trusted server certificate: KILN_VALIDATION at its field, never copied into the trust store", async () => {
    const pkiDir = path.join(workDir, "client-key");
    const error = await connectError(
      driverWith(pkiDir, {
        pki: { dir: pkiDir, trustedServerCertificates: [server.certificateFile, keyFile] },
      }),
    );
    expect(error).toMatchObject({
      code: "KILN_VALIDATION",
      retryable: false,
      details: { issues: [{ path: "pki.trustedServerCertificates[1]" }] },
    });
    expect(error.message).toContain(keyFile);
    expect(error.message).toMatch(/PRIVATE KEY/);
    expect(error.message).toMatch(/CERTIFICATE/);
    const key = (await readFile(keyFile, "latin1")).split("\n")[1]!;
    for (const content of await filesUnder(path.join(pkiDir, "trusted"))) expect(content).not.toContain(key);

    // The server's own certificate alone is accepted.
    const driver = driverWith(pkiDir, { pki: { dir: pkiDir, trustedServerCertificates: [server.certificateFile] } });
    await driver.connect();
    expect(driver.status).toBe("connected");
    await driver.close();
  }, 30_000);

  test("sibling: a garbage trusted certificate under the control system: start() rejects KILN_VALIDATION, no re-dial", async () => {
    const pkiDir = path.join(workDir, "client-garbage");
    const driver = driverWith(pkiDir, { pki: { dir: pkiDir, trustedServerCertificates: [garbageFile] } });
    let changes = 0;
    driver.onStatusChange(() => changes++);
    const system = createControlSystem({
      machineId: "fix13af",
      tags: defineTags({ r: { dataType: "int32", address: "ns=0;i=2258" } }),
      store: new MemoryStore(),
      driver,
      scanGroups: { default: { periodMs: 500 } },
      acquisition: { reconnect: { initialDelayMs: 100, maxDelayMs: 500 } },
    });
    const error = await system.start().then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toMatchObject({
      code: "KILN_VALIDATION",
      retryable: false,
      details: { issues: [{ path: "pki.trustedServerCertificates[0]" }] },
    });
    expect((error as Error).message).toContain(garbageFile);
    const after = changes;
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(changes).toBe(after);
    await system.stop().catch(() => undefined);
  }, 30_000);

  test("sibling: identity certificate garbage and key a certificate: both fields named; a key of another certificate named", async () => {
    const pkiDir = path.join(workDir, "client-identity");
    const both = await connectError(
      driverWith(pkiDir, {
        identity: { type: "certificate", certificateFile: garbageFile, privateKeyFile: server.certificateFile },
      }),
    );
    expect(both).toMatchObject({ code: "KILN_VALIDATION", retryable: false });
    expect((both.details.issues as { path: string }[]).map((issue) => issue.path)).toEqual([
      "identity.certificateFile",
      "identity.privateKeyFile",
    ]);

    const mismatch = await connectError(
      driverWith(pkiDir, {
        identity: { type: "certificate", certificateFile: server.certificateFile, privateKeyFile: keyFile },
      }),
    );
    expect(mismatch).toMatchObject({
      code: "KILN_VALIDATION",
      details: { issues: [{ path: "identity.privateKeyFile" }] },
    });
    expect(mismatch.message).toMatch(/not the private key of the certificate/);
  }, 30_000);
});
