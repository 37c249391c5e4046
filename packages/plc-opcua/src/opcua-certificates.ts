import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

/**
 * A file or value that was read but does not hold what its option needs (a certificate, a
 * private key): the message says what was found and the rule. Not a read failure.
 */
export class PkiContentError extends Error {
  override readonly name = "PkiContentError";
}

/** True when `bytes` (or text) is PEM armoured. */
export function isPem(text: string): boolean {
  return text.trimStart().startsWith("-----BEGIN");
}

/** The labels and DER bytes of every PEM block of `pem`, in order. */
function pemBlocks(pem: string): { readonly label: string; readonly der: Buffer }[] {
  return [...pem.matchAll(PEM_BLOCK)].map((match) => ({
    label: match[1]!,
    der: Buffer.from(match[2]!.replace(/\s+/g, ""), "base64"),
  }));
}

/** The DER bytes of the first block of a PEM text. */
export function pemToDer(pem: string): Buffer {
  const [first] = pemBlocks(pem);
  if (!first) throw new Error("not a PEM block");
  return first.der;
}

/**
 * The DER bytes of a certificate given as a file path (PEM or DER), PEM text, or bytes (PEM
 * or DER). The first certificate of a chain is used. Only a PEM block labelled `CERTIFICATE`
 * or DER bytes that parse as an X.509 certificate are accepted: anything else (a private key, a
 * CSR, garbage) is never handed on, so it cannot be filed in a trust store.
 *
 * @throws PkiContentError when the source holds no X.509 certificate; a read error as it is.
 */
export async function certificateDer(source: string | Uint8Array): Promise<Buffer> {
  if (typeof source === "string" && !isPem(source)) return certificateDer(await readFile(source));
  const bytes = typeof source === "string" ? Buffer.from(source, "latin1") : Buffer.from(source);
  const head = bytes.subarray(0, 64).toString("latin1");
  let der: Buffer;
  if (isPem(head)) {
    const blocks = pemBlocks(bytes.toString("latin1"));
    const certificate = blocks.find((block) => block.label === "CERTIFICATE");
    if (!certificate) {
      const labels = blocks.map((block) => block.label);
      throw new PkiContentError(
        labels.length > 0
          ? `it holds no certificate (PEM ${labels.map((label) => `"${label}"`).join(", ")}; a "CERTIFICATE" block is needed)`
          : 'it holds no complete PEM block (a "CERTIFICATE" block is needed)',
      );
    }
    der = certificate.der;
  } else {
    der = bytes;
  }
  try {
    new X509Certificate(der);
  } catch (error) {
    throw new PkiContentError(
      `it is not an X.509 certificate (PEM "CERTIFICATE" or DER; ${(error as Error).message.split("\n")[0]})`,
    );
  }
  return der;
}

/**
 * The PEM text of a private key file (PEM as is; DER, PKCS#8, converted), checked to be an
 * unencrypted private key.
 *
 * @throws PkiContentError when the file holds no usable private key; a read error as it is.
 */
export async function privateKeyPem(file: string): Promise<string> {
  const bytes = await readFile(file);
  const text = bytes.toString("latin1");
  const pem = isPem(text)
    ? text
    : `-----BEGIN PRIVATE KEY-----\n${bytes.toString("base64").replace(/(.{64})/g, "$1\n")}\n-----END PRIVATE KEY-----\n`;
  privateKeyOf(pem);
  return pem;
}

/** The key object of a private key PEM text. @throws PkiContentError when it holds none. */
export function privateKeyOf(pem: string): KeyObject {
  const labels = pemBlocks(pem).map((block) => block.label);
  if (!labels.some((label) => label.endsWith("PRIVATE KEY"))) {
    throw new PkiContentError(
      `it holds no private key (${labels.length > 0 ? `PEM ${labels.map((label) => `"${label}"`).join(", ")}` : "no PEM block, and not a DER PKCS#8 key"}; an unencrypted "PRIVATE KEY" is needed)`,
    );
  }
  try {
    return createPrivateKey(pem);
  } catch (error) {
    throw new PkiContentError(
      `it is not a usable private key (an unencrypted PKCS#8 or PKCS#1 key is needed; ${(error as Error).message.split("\n")[0]})`,
    );
  }
}

/** True when `key` is the private key of the certificate `der` (DER bytes). */
export function keyMatchesCertificate(der: Buffer, key: KeyObject): boolean {
  try {
    return new X509Certificate(der).checkPrivateKey(key);
  } catch {
    return false;
  }
}
