import { copyFile, mkdir, readdir } from "node:fs/promises";
import path from "node:path";
import type { ControlSystem, Principal } from "@kiln/core";
import { OpcuaServer, type OpcuaUserIdentity } from "@kiln/opcua-server";

/**
 * The demo's OPC UA users (documented in the README): user name, password and the Kiln role
 * they act with. Demo passwords: do not reuse them anywhere.
 */
export const ALD_DEMO_USERS: Readonly<Record<string, { readonly password: string; readonly role: string }>> = {
  operator: { password: "ald-operator-demo", role: "operator" },
  viewer: { password: "ald-viewer-demo", role: "viewer" },
};

/** How the demo serves its system over OPC UA (`--serve`). */
export interface AldServeOptions {
  /** TCP port. @default 4840 */
  readonly port?: number;
  /** The server's PKI folder. */
  readonly pkiDir: string;
  /** A folder of client certificates (`.pem`/`.der`) to trust, e.g. a generic client's. */
  readonly trustClientCertsDir?: string;
  /** Also offer SecurityPolicy None and anonymous sessions (as a viewer), for trying a generic client. */
  readonly allowInsecure?: boolean;
}

/** The identity mapper of the demo: its users by password; anonymous (when allowed) as a viewer. */
export function identifyDemoUser(identity: OpcuaUserIdentity): Principal | undefined {
  if (identity.type === "anonymous") return { id: "anonymous", roles: ["viewer"] };
  if (identity.type !== "username") return undefined;
  const user = ALD_DEMO_USERS[identity.userName];
  return user?.password === identity.password ? { id: identity.userName, roles: [user.role] } : undefined;
}

/**
 * Starts an OPC UA server for `system` with the demo users. The certificates in
 * `trustClientCertsDir` are copied into the PKI's `trusted/certs` first.
 */
export async function serveAldSystem(system: ControlSystem, options: AldServeOptions): Promise<OpcuaServer> {
  if (options.trustClientCertsDir !== undefined) {
    const trusted = path.join(options.pkiDir, "trusted", "certs");
    await mkdir(trusted, { recursive: true });
    for (const file of await readdir(options.trustClientCertsDir)) {
      if (/\.(pem|der|crt)$/i.test(file))
        await copyFile(path.join(options.trustClientCertsDir, file), path.join(trusted, file));
    }
  }
  const server = new OpcuaServer(system, {
    port: options.port ?? 4840,
    pki: { dir: options.pkiDir },
    identify: identifyDemoUser,
    securityModes: options.allowInsecure ? ["None", "SignAndEncrypt"] : ["SignAndEncrypt"],
    allowAnonymous: options.allowInsecure === true,
  });
  await server.start();
  return server;
}
