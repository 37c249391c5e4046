import { createHash } from "node:crypto";
import { readdir, unlink } from "node:fs/promises";
import path from "node:path";
import type { OPCUACertificateManager } from "node-opcua-certificate-manager";
import { certificateDer } from "./opcua-certificates";

type Certificate = Parameters<OPCUACertificateManager["isCertificateTrusted"]>[0] & Buffer;

/**
 * Makes `manager` never file a certificate the user trusted (one in `trusted/certs`, put there by
 * hand or by `pki.trustedServerCertificates`) in `rejected/`. node-opcua's check moves the whole
 * chain of a server certificate that fails with BadCertificateChainIncomplete to `rejected/` (a
 * CA-signed certificate trusted without its CA), so the user's trust was undone at every attempt
 * and the advice "move it back to trusted/certs" looped (adversarial review adv13y, MEDIUM-1). The
 * verdict is unchanged (the chain is still incomplete; the error names the missing CA and CRL);
 * only certificates not trusted are filed as rejected. Issue 13: "never moves a certificate the
 * user trusted back to rejected".
 */
export function keepTrustedCertificates(manager: OPCUACertificateManager): void {
  const reject = manager.rejectCertificate.bind(manager) as (certificate: Certificate) => Promise<void>;
  const rejectUntrusted = async (certificateOrChain: Certificate | Certificate[]): Promise<void> => {
    const certificates = Array.isArray(certificateOrChain) ? certificateOrChain : [certificateOrChain];
    for (const certificate of certificates) {
      if ((await manager.isCertificateTrusted(certificate)) === "Good") continue;
      await reject(certificate);
    }
  };
  (manager as unknown as { rejectCertificate: typeof rejectUntrusted }).rejectCertificate = rejectUntrusted;
}

/**
 * Removes from `rejected/` every certificate that is also in `trusted/certs` (same DER, whatever
 * the file names). node-opcua-pki treats a certificate found in both as rejected, so a user who
 * copied a rejected certificate into `trusted/certs` (as the README's `cp` does) instead of
 * moving it stayed refused at every attempt (adversarial review adv13z, MEDIUM-2). Run before
 * each connection attempt: trust given while running takes effect on the next one (issue 13).
 * Files that are not certificates are left alone; a folder that cannot be read changes nothing.
 */
export async function forgetRejectedCopiesOfTrusted(manager: OPCUACertificateManager): Promise<void> {
  const trusted = new Set<string>();
  for (const file of await certificateFiles(manager.trustedFolder)) trusted.add(file.thumbprint);
  if (trusted.size === 0) return;
  for (const file of await certificateFiles(manager.rejectedFolder)) {
    if (trusted.has(file.thumbprint)) await unlink(file.path).catch(() => undefined);
  }
}

async function certificateFiles(folder: string): Promise<{ path: string; thumbprint: string }[]> {
  const names = await readdir(folder).catch(() => [] as string[]);
  const files: { path: string; thumbprint: string }[] = [];
  for (const name of names) {
    const file = path.join(folder, name);
    try {
      files.push({
        path: file,
        thumbprint: createHash("sha1")
          .update(await certificateDer(file))
          .digest("hex"),
      });
    } catch {
      // Not a readable certificate (a folder, a key, garbage): not ours to judge here.
    }
  }
  return files;
}
