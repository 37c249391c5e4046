/** A bare node-opcua server (anonymous, security None) for the benchmarks that measure Kiln's server beside it. */
import { MessageSecurityMode, nodesets, OPCUACertificateManager, OPCUAServer, SecurityPolicy } from "node-opcua";

/**
 * Creates and initializes a bare node-opcua server on a free loopback port with its PKI in
 * `pkiDir` and `namespaceUri` registered; the caller adds its nodes, then `server.start()`s it and,
 * at the end, shuts it down and disposes `certificateManager`.
 */
export async function bareOpcuaServer(pkiDir: string, namespaceUri: string) {
  const certificateManager = new OPCUACertificateManager({
    rootFolder: pkiDir,
    automaticallyAcceptUnknownCertificate: true,
  });
  const server = new OPCUAServer({
    port: 0,
    host: "127.0.0.1",
    hostname: "127.0.0.1",
    nodeset_filename: [nodesets.standard],
    serverCertificateManager: certificateManager,
    securityModes: [MessageSecurityMode.None],
    securityPolicies: [SecurityPolicy.None],
    allowAnonymous: true,
  });
  await server.initialize();
  const addressSpace = server.engine.addressSpace!;
  return { server, certificateManager, addressSpace, namespace: addressSpace.registerNamespace(namespaceUri) };
}
