import { readFile } from "node:fs/promises";

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/;

/** True when `bytes` (or text) is PEM armoured. */
export function isPem(text: string): boolean {
  return text.trimStart().startsWith("-----BEGIN");
}

/** The DER bytes of the first block of a PEM text. */
export function pemToDer(pem: string): Buffer {
  const match = PEM_BLOCK.exec(pem);
  if (!match) throw new Error("not a PEM block");
  return Buffer.from(match[2]!.replace(/\s+/g, ""), "base64");
}

/**
 * The DER bytes of a certificate given as a file path (PEM or DER), PEM text, or bytes (PEM
 * or DER). The first certificate of a chain is used.
 */
export async function certificateDer(source: string | Uint8Array): Promise<Buffer> {
  if (typeof source === "string") {
    if (isPem(source)) return pemToDer(source);
    return certificateDer(await readFile(source));
  }
  const bytes = Buffer.from(source);
  const head = bytes.subarray(0, 64).toString("latin1");
  return isPem(head) ? pemToDer(bytes.toString("latin1")) : bytes;
}

/** The PEM text of a private key file (PEM as is; DER converted). */
export async function privateKeyPem(file: string): Promise<string> {
  const bytes = await readFile(file);
  const text = bytes.toString("latin1");
  if (isPem(text)) return text;
  const body = bytes.toString("base64").replace(/(.{64})/g, "$1\n");
  return `-----BEGIN PRIVATE KEY-----\n${body}\n-----END PRIVATE KEY-----\n`;
}
