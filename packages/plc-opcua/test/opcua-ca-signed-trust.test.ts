import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { KilnError } from "@kiln/core";
import { OPCUACertificateManager } from "node-opcua-certificate-manager";
import { MessageSecurityMode, SecurityPolicy } from "node-opcua-client";
import { nodesets } from "node-opcua-nodesets";
import { OPCUAServer } from "node-opcua-server";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { OpcuaDriver } from "../src/index";

// adv13y MEDIUM-1 (issue 13: "the driver never moves a certificate the user trusted back to
// rejected"): a server with a CA-signed certificate, trusted by the user as the docs say (its file
// in pki/trusted/certs, or pki.trustedServerCertificates) without the CA, failed with
// BadCertificateChainIncomplete, and node-opcua moved the user's file to rejected/ while the
// error said to move it back: a loop. The file now stays trusted and the error names what is
// missing (the CA in issuers/certs, its CRL in issuers/crl).
const execute = promisify(execFile);
// Test files share one process (ADR 0044): another may have left OPENSSL_CONF set to "undefined"
// (node-opcua-pki), which openssl then tries to open. openssl runs with its own default config.
const opensslEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => name !== "OPENSSL_CONF"));
const run = (command: string, args: string[]) => execute(command, args, { env: opensslEnv });
const hasOpenssl = await run("openssl", ["version"]).then(
  () => true,
  () => false,
);
if (!hasOpenssl)
  console.warn("skipped opcua-ca-signed-trust: needs the openssl command to make a CA (apt-get install openssl)");

let workDir: string;
let caDir: string;
let server: OPCUAServer;
let url: string;

beforeAll(async () => {
  if (!hasOpenssl) return;
  workDir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-ca-"));
  caDir = path.join(workDir, "ca");
  await mkdir(caDir);
  const at = (name: string) => path.join(caDir, name);
  await run("openssl", [
    ...["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", at("ca.key"), "-out", at("ca.pem")],
    ...["-days", "30", "-subj", "/CN=Kiln Test CA"],
    ...["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
    ...["-addext", "subjectKeyIdentifier=hash"],
  ]);
  await run("openssl", [
    ...["req", "-newkey", "rsa:2048", "-nodes", "-keyout", at("server.key"), "-out", at("server.csr")],
    ...["-subj", "/CN=kiln-test-server"],
  ]);
  await writeFile(
    at("ext.cnf"),
    [
      "subjectAltName=URI:urn:kiln:test:ca-signed-server,DNS:localhost,IP:127.0.0.1",
      "keyUsage=critical,digitalSignature,nonRepudiation,keyEncipherment,dataEncipherment",
      "extendedKeyUsage=serverAuth,clientAuth",
      "authorityKeyIdentifier=keyid",
      "subjectKeyIdentifier=hash",
      "basicConstraints=CA:FALSE",
      "",
    ].join("\n"),
  );
  await run("openssl", [
    ...["x509", "-req", "-in", at("server.csr"), "-CA", at("ca.pem"), "-CAkey", at("ca.key")],
    ...["-CAcreateserial", "-out", at("server.pem"), "-days", "30", "-extfile", at("ext.cnf")],
  ]);
  const serverCertificateManager = new OPCUACertificateManager({
    rootFolder: path.join(workDir, "server-pki"),
    automaticallyAcceptUnknownCertificate: true,
  });
  await serverCertificateManager.initialize();
  server = new OPCUAServer({
    port: 0,
    hostname: "127.0.0.1",
    nodeset_filename: [nodesets.standard],
    certificateFile: at("server.pem"),
    privateKeyFile: at("server.key"),
    serverCertificateManager,
    serverInfo: { applicationUri: "urn:kiln:test:ca-signed-server" },
    securityModes: [MessageSecurityMode.SignAndEncrypt],
    securityPolicies: [SecurityPolicy.Basic256Sha256],
    allowAnonymous: true,
  } as ConstructorParameters<typeof OPCUAServer>[0]);
  await server.initialize();
  await server.start();
  url = `opc.tcp://127.0.0.1:${server.endpoints[0]!.port}`;
}, 60_000);

afterAll(async () => {
  await server?.shutdown(0);
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

/** The error of one connect() with the PKI at `pki`, and the driver closed. */
async function connectError(pki: string, trustedServerCertificates?: string[]): Promise<KilnError> {
  const driver = new OpcuaDriver({
    endpointUrl: url,
    security: { mode: "SignAndEncrypt", policy: "Basic256Sha256" },
    pki: { dir: pki, ...(trustedServerCertificates ? { trustedServerCertificates } : {}) },
    timeouts: { connectMs: 20_000 },
  });
  try {
    await driver.connect();
  } catch (error) {
    if (KilnError.is(error)) return error;
    throw error;
  } finally {
    await driver.close().catch(() => undefined);
  }
  throw new Error("connected, where the chain is incomplete");
}

async function files(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => []);
}

describe.skipIf(!hasOpenssl)("a CA-signed server certificate trusted without its CA", () => {
  test("the user's file stays in trusted/certs, and the error names the missing CA and CRL, not rejected/", async () => {
    const pki = path.join(workDir, "client-folder");
    await mkdir(path.join(pki, "trusted", "certs"), { recursive: true });
    const trusted = path.join(pki, "trusted", "certs", "plc.pem");
    await copyFile(path.join(caDir, "server.pem"), trusted);
    for (let attempt = 0; attempt < 2; attempt++) {
      const error = await connectError(pki);
      expect(error.code).toBe("KILN_CONNECTION_FAILED");
      expect(error.details.statusName).toBe("BadCertificateChainIncomplete");
      expect(error.message).toContain(`${pki}/issuers/certs`);
      expect(error.message).not.toContain("rejected");
      expect(existsSync(trusted)).toBe(true);
      expect(await files(path.join(pki, "rejected"))).toEqual([]);
    }
  }, 60_000);

  // Sibling: trusted through the option (the driver writes it into trusted/certs), the same.
  test("trusted by pki.trustedServerCertificates: nothing filed in rejected/ either", async () => {
    const pki = path.join(workDir, "client-option");
    const error = await connectError(pki, [path.join(caDir, "server.pem")]);
    expect(error.details.statusName).toBe("BadCertificateChainIncomplete");
    expect(await files(path.join(pki, "rejected"))).toEqual([]);
  }, 60_000);

  // Sibling: the CA given (issuers/certs) but not its revocation list: the error says so.
  test("with the CA in issuers/certs and no CRL, the error names issuers/crl", async () => {
    const pki = path.join(workDir, "client-issuer");
    await mkdir(path.join(pki, "trusted", "certs"), { recursive: true });
    await mkdir(path.join(pki, "issuers", "certs"), { recursive: true });
    await copyFile(path.join(caDir, "server.pem"), path.join(pki, "trusted", "certs", "plc.pem"));
    await copyFile(path.join(caDir, "ca.pem"), path.join(pki, "issuers", "certs", "ca.pem"));
    const error = await connectError(pki);
    expect(error.details.statusName).toBe("BadCertificateRevocationUnknown");
    expect(error.message).toContain(`${pki}/issuers/crl`);
    expect(existsSync(path.join(pki, "trusted", "certs", "plc.pem"))).toBe(true);
    expect(await files(path.join(pki, "rejected"))).toEqual([]);
  }, 60_000);
});
