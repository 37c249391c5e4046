import { generateKeyPairSync } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { certificateDer, PkiContentError, pemToDer, privateKeyPem } from "./opcua-certificates";

// The forms a user may give a trusted server certificate or a private key in: a path to a PEM
// or DER file, PEM text, or bytes. Every form must yield the same DER bytes. Content that is not
// what the field needs is refused (docs/adr/0022, amendment fix13af).
/** A self-signed test certificate (CN=kiln-test, P-256), public: its key is not kept. */
const pem = `-----BEGIN CERTIFICATE-----
MIIBfjCCASWgAwIBAgIURrZHZSWNHIdRdJ/be8kJPsoVRzcwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJa2lsbi10ZXN0MCAXDTI2MTIwMzE5MDMyNVoYDzIxMjYxMTA5
MTkwMzI1WjAUMRIwEAYDVQQDDAlraWxuLXRlc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAT1PGokkKtwDBpzNRUG8hhG7G1DcuD5jFJiHcTp7Heoq8hfxby16uhq
+E9NHxtFUgn/nJhO89rRGF4l8wy/QCQmo1MwUTAdBgNVHQ4EFgQUULsxkX0H9AVr
dkwi92MQE4IznxYwHwYDVR0jBBgwFoAUULsxkX0H9AVrdkwi92MQE4IznxYwDwYD
VR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNHADBEAiA/OCWAYBE9z1nDgQLuHODs
BuUhVJbW1xL2h+bcUNrxkAIgerVeYRg3XxEPHU7wkAonGBHXZ/CCJEPlSS2oK0xp
kXw=
-----END CERTIFICATE-----
`;
const der = pemToDer(pem);
const key = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
const keyPem = key.export({ type: "pkcs8", format: "pem" }) as string;
const keyDer = key.export({ type: "pkcs8", format: "der" });
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
    await writeFile(path.join(dir, "key.der"), keyDer);
    const armoured = await privateKeyPem(path.join(dir, "key.der"));
    expect(armoured.startsWith("-----BEGIN PRIVATE KEY-----\n")).toBe(true);
    expect(pemToDer(armoured)).toEqual(keyDer);
    await writeFile(path.join(dir, "key.pem"), keyPem);
    expect(await privateKeyPem(path.join(dir, "key.pem"))).toBe(keyPem);
  });

  test("a private key, garbage or a broken block given as a certificate is refused, naming what it holds (adv13 MEDIUM-3)", async () => {
    await expect(certificateDer(keyPem)).rejects.toThrow(PkiContentError);
    await expect(certificateDer(keyPem)).rejects.toThrow(/PEM "PRIVATE KEY"; a "CERTIFICATE" block is needed/);
    await expect(certificateDer(new Uint8Array(keyDer))).rejects.toThrow(/not an X.509 certificate/);
    await writeFile(path.join(dir, "garbage.pem"), "hello, not a certificate\n");
    await expect(certificateDer(path.join(dir, "garbage.pem"))).rejects.toThrow(/not an X.509 certificate/);
    const broken = "-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n";
    await expect(certificateDer(broken)).rejects.toThrow(/not an X.509 certificate/);
    // A key file followed by its certificate: the certificate block is taken, never the key.
    expect(await certificateDer(keyPem + pem)).toEqual(der);
  });

  test("sibling: a certificate or garbage given as a private key is refused", async () => {
    await writeFile(path.join(dir, "cert-as-key.pem"), pem);
    await expect(privateKeyPem(path.join(dir, "cert-as-key.pem"))).rejects.toThrow(
      /holds no private key \(PEM "CERTIFICATE"/,
    );
    await writeFile(path.join(dir, "garbage.key"), "hello");
    await expect(privateKeyPem(path.join(dir, "garbage.key"))).rejects.toThrow(/not a usable private key/);
  });
});
