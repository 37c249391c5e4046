import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { certificateDer, pemToDer, privateKeyPem } from "./opcua-certificates";

// The forms a user may give a trusted server certificate or a private key in: a path to a PEM
// or DER file, PEM text, or bytes. Every form must yield the same DER bytes.
const der = Buffer.from(Array.from({ length: 200 }, (_, index) => (index * 37) % 256));
const pem = `-----BEGIN CERTIFICATE-----\n${der.toString("base64").replace(/(.{64})/g, "$1\n")}\n-----END CERTIFICATE-----\n`;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "kiln-opcua-certs-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("certificate and key forms", () => {
  test("PEM text, PEM bytes, DER bytes, and PEM or DER files give the same DER bytes", async () => {
    await writeFile(path.join(dir, "server.pem"), pem);
    await writeFile(path.join(dir, "server.der"), der);
    for (const source of [
      pem,
      Buffer.from(pem, "latin1"),
      new Uint8Array(der),
      path.join(dir, "server.pem"),
      path.join(dir, "server.der"),
    ]) {
      expect(await certificateDer(source)).toEqual(der);
    }
  });

  test("text that is not PEM is refused, not decoded as base64 garbage", () => {
    expect(() => pemToDer("-----BEGIN CERTIFICATE-----\nAAAA\n")).toThrow(/not a PEM block/);
  });

  test("a DER private key file is armoured as PEM; a PEM file is returned as it is", async () => {
    await writeFile(path.join(dir, "key.der"), der);
    const armoured = await privateKeyPem(path.join(dir, "key.der"));
    expect(armoured.startsWith("-----BEGIN PRIVATE KEY-----\n")).toBe(true);
    expect(pemToDer(armoured)).toEqual(der);
    await writeFile(path.join(dir, "key.pem"), armoured);
    expect(await privateKeyPem(path.join(dir, "key.pem"))).toBe(armoured);
  });
});
