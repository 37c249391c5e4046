import { copyFile, readdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { KilnError, defineTags } from "@kiln/core";
import { OPCUACertificateManager } from "node-opcua";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { OpcuaDriver, OpcuaSimulator, type OpcuaDriverOptions } from "../src/index";
import { RecordingLogger } from "./support/recording-logger";

const PASSWORD = "s3cret-Reactor-pa55";

const tags = defineTags({
  "chamber.pressure": { dataType: "float64", address: "ns=2;s=Chamber.Pressure" },
});

let simulator: OpcuaSimulator;
let sharedPki: string;
const pkiDirs: string[] = [];

async function freshPki(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-client-"));
  pkiDirs.push(dir);
  return dir;
}

async function secureOptions(overrides: Partial<OpcuaDriverOptions> = {}): Promise<OpcuaDriverOptions> {
  return {
    endpointUrl: simulator.endpointUrl,
    security: { mode: "SignAndEncrypt", policy: "Basic256Sha256" },
    identity: { type: "username", userName: "operator", password: PASSWORD },
    pki: { dir: sharedPki, trustedServerCertificates: [simulator.certificateFile] },
    ...overrides,
  };
}

beforeAll(async () => {
  simulator = new OpcuaSimulator({
    tags,
    signals: { "chamber.pressure": { kind: "constant", value: 4.2 } },
    users: [{ userName: "operator", password: PASSWORD }],
    allowAnonymous: false,
    securityModes: ["SignAndEncrypt"],
  });
  await simulator.start();
  sharedPki = await freshPki();
});

afterAll(async () => {
  await simulator?.dispose();
  await Promise.all(pkiDirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

describe("OpcuaDriver security", () => {
  test.each(["Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"] as const)(
    "SignAndEncrypt (%s) with username/password connects and reads",
    async (policy) => {
      const logger = new RecordingLogger();
      const driver = new OpcuaDriver(await secureOptions({ security: { mode: "SignAndEncrypt", policy }, logger }));
      try {
        await driver.connect();
        const [sample] = await driver.read(tags.list());
        expect(sample).toMatchObject({ tag: "chamber.pressure", value: 4.2, quality: { severity: "good" } });
      } finally {
        await driver.close();
      }
      expect(logger.text()).not.toContain(PASSWORD);
      expect(logger.lines.some((line) => /security mode is None/.test(line.message))).toBe(false);
    },
  );

  test("an X.509 user identity (certificate and private key files) connects and reads", async () => {
    const userPki = await freshPki();
    const userCertificates = new OPCUACertificateManager({ rootFolder: userPki });
    await userCertificates.initialize();
    const certificateFile = path.join(userPki, "own", "certs", "kiln-user.pem");
    await userCertificates.createSelfSignedCertificate({
      outputFile: certificateFile,
      subject: "/CN=kiln-user",
      applicationUri: "urn:kiln:test-user",
      dns: [],
      startDate: new Date(),
      validity: 30,
    });
    await userCertificates.dispose();
    const driver = new OpcuaDriver(
      await secureOptions({
        identity: { type: "certificate", certificateFile, privateKeyFile: userCertificates.privateKey },
      }),
    );
    try {
      await driver.connect();
      const [sample] = await driver.read(tags.list());
      expect(sample).toMatchObject({ value: 4.2, quality: { severity: "good" } });
    } finally {
      await driver.close();
    }
  });

  test("a wrong password fails fast with KILN_AUTHENTICATION_FAILED, one log-in attempt, no password anywhere", async () => {
    const logger = new RecordingLogger();
    const wrong = "wrong-Pa55word-42";
    const changes: string[] = [];
    const driver = new OpcuaDriver(
      await secureOptions({ identity: { type: "username", userName: "operator", password: wrong }, logger }),
    );
    driver.onStatusChange((change) => changes.push(change.to));
    simulator.resetStats();
    const error = await driver.connect().catch((caught: unknown) => caught);

    expect(KilnError.is(error, "KILN_AUTHENTICATION_FAILED")).toBe(true);
    expect((error as KilnError).retryable).toBe(false);
    expect((error as KilnError).details.statusName).toBe("BadUserAccessDenied");
    expect(simulator.stats.activateSessionRequests).toBe(1);
    expect(driver.status).toBe("failed");
    expect(changes).toEqual(["connecting", "failed"]);

    const everything = `${(error as Error).message} ${JSON.stringify((error as KilnError).details)} ${logger.text()}`;
    expect(everything).not.toContain(wrong);
    expect(everything).not.toContain(PASSWORD);

    // Nothing keeps trying in the background: a read round trip later, still one attempt.
    const probe = new OpcuaDriver(await secureOptions());
    await probe.connect();
    await probe.read(tags.list());
    await probe.close();
    expect(simulator.stats.activateSessionRequests).toBe(2); // the probe's own
    await driver.close();
  });

  test("an unknown server certificate is rejected unless trusted (not retryable)", async () => {
    const pki = await freshPki();
    const driver = new OpcuaDriver(await secureOptions({ pki: { dir: pki } }));
    const error = await driver.connect().catch((caught: unknown) => caught);
    expect(KilnError.is(error, "KILN_CONNECTION_FAILED")).toBe(true);
    expect((error as KilnError).retryable).toBe(false);
    expect((error as KilnError).details.reason).toBe("server-certificate-untrusted");
    // node-opcua files the certificate under rejected/, where a user can move it to trusted/.
    expect((await readdir(path.join(pki, "rejected"))).length).toBe(1);
    await driver.close();
  });

  test("a rejected certificate copied (not moved) into trusted/certs is trusted on the next connect; the rejected copy is removed", async () => {
    // adv13z MEDIUM-2: node-opcua treats a certificate in both trusted/certs and rejected/ as rejected,
    // so the README's `cp` into trusted/certs had no effect while the rejected copy stayed.
    const pki = await freshPki();
    const refused = new OpcuaDriver(await secureOptions({ pki: { dir: pki } }));
    expect(KilnError.is(await refused.connect().catch((caught: unknown) => caught), "KILN_CONNECTION_FAILED")).toBe(
      true,
    );
    await refused.close();
    const [rejectedFile] = await readdir(path.join(pki, "rejected"));
    expect(rejectedFile).toBeDefined();
    // Copied under another name, as an operator following the README would.
    await copyFile(path.join(pki, "rejected", rejectedFile!), path.join(pki, "trusted", "certs", "plc-server.pem"));
    // Sibling: what is not a certificate in rejected/ is left alone.
    await writeFile(path.join(pki, "rejected", "notes.txt"), "not a certificate");
    const trusted = new OpcuaDriver(await secureOptions({ pki: { dir: pki } }));
    try {
      await trusted.connect();
      expect(trusted.status).toBe("connected");
      expect(await readdir(path.join(pki, "rejected"))).toEqual(["notes.txt"]);
      expect(await readdir(path.join(pki, "trusted", "certs"))).toContain("plc-server.pem");
    } finally {
      await trusted.close();
    }
  });

  test("automaticallyAcceptUnknownCertificate is an explicit opt-in that lets the connection through", async () => {
    const driver = new OpcuaDriver(
      await secureOptions({ pki: { dir: await freshPki(), automaticallyAcceptUnknownCertificate: true } }),
    );
    try {
      await driver.connect();
      expect(driver.status).toBe("connected");
    } finally {
      await driver.close();
    }
  });

  test("a certificate trusted once in the PKI folder is trusted on the next connect too", async () => {
    const pki = await freshPki();
    const first = new OpcuaDriver(
      await secureOptions({ pki: { dir: pki, trustedServerCertificates: [simulator.certificateFile] } }),
    );
    await first.connect();
    await first.close();
    const second = new OpcuaDriver(await secureOptions({ pki: { dir: pki } }));
    try {
      await second.connect();
      expect(second.status).toBe("connected");
    } finally {
      await second.close();
    }
  });

  test("anonymous access to a server that requires a user fails with KILN_AUTHENTICATION_FAILED", async () => {
    const driver = new OpcuaDriver(await secureOptions({ identity: { type: "anonymous" } }));
    simulator.resetStats();
    const error = await driver.connect().catch((caught: unknown) => caught);
    expect(KilnError.is(error, "KILN_AUTHENTICATION_FAILED")).toBe(true);
    expect((error as KilnError).retryable).toBe(false);
    expect(simulator.stats.activateSessionRequests).toBe(0); // refused before any log-in traffic
    await driver.close();
  });

  test("a security mode the server does not offer fails with a non-retryable KILN_CONNECTION_FAILED", async () => {
    const driver = new OpcuaDriver(await secureOptions({ security: { mode: "Sign" } }));
    const error = await driver.connect().catch((caught: unknown) => caught);
    expect(KilnError.is(error, "KILN_CONNECTION_FAILED")).toBe(true);
    expect((error as KilnError).retryable).toBe(false);
    await driver.close();
  });

  test("a server that is not there fails with a retryable KILN_CONNECTION_FAILED after maxRetry attempts", async () => {
    const driver = new OpcuaDriver(
      await secureOptions({
        endpointUrl: "opc.tcp://127.0.0.1:1",
        connectionStrategy: { maxRetry: 1, initialDelayMs: 10, maxDelayMs: 20 },
      }),
    );
    const error = await driver.connect().catch((caught: unknown) => caught);
    expect(KilnError.is(error, "KILN_CONNECTION_FAILED")).toBe(true);
    expect((error as KilnError).retryable).toBe(true);
    expect(driver.status).toBe("disconnected");
    await driver.close();
  });
});
