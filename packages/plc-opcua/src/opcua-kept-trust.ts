import type { OPCUACertificateManager } from "node-opcua-certificate-manager";

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
