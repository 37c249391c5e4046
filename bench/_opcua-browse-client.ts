/** The client of the opcua-browse benchmark, in its own process: browses a folder whole, ROUNDS times, and reports. */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  BrowseDirection,
  type ClientSession,
  MessageSecurityMode,
  OPCUACertificateManager,
  OPCUAClient,
  SecurityPolicy,
} from "node-opcua";

/** What the parent asks (KILN_BROWSE_CLIENT, JSON). */
interface Job {
  readonly endpointUrl: string;
  readonly namespaceUri: string;
  readonly folder: string;
  readonly rounds: number;
}

/** Browse of `nodeId` with the full ResultMask, every NodeClass, both directions, then BrowseNext to the end. */
async function browseWhole(session: ClientSession, nodeId: string): Promise<{ references: number; pieces: number }> {
  let result = await session.browse({
    nodeId,
    browseDirection: BrowseDirection.Both,
    includeSubtypes: true,
    nodeClassMask: 0,
    resultMask: 0x3f,
  });
  let references = result.references?.length ?? 0;
  let pieces = 1;
  while (result.statusCode.isGood() && result.continuationPoint && result.continuationPoint.length > 0) {
    result = await session.browseNext(result.continuationPoint, false);
    references += result.references?.length ?? 0;
    pieces++;
  }
  if (!result.statusCode.isGood()) throw new Error(`browse answered ${result.statusCode.toString()}`);
  return { references, pieces };
}

process.on("message", (message) => {
  if (message === "stop") process.exit(0);
});
const job = JSON.parse(process.env.KILN_BROWSE_CLIENT ?? "{}") as Job;
const pkiDir = await mkdtemp(path.join(tmpdir(), "kiln-bench-browse-client-"));
const client = OPCUAClient.create({
  endpointMustExist: false,
  securityMode: MessageSecurityMode.None,
  securityPolicy: SecurityPolicy.None,
  clientCertificateManager: new OPCUACertificateManager({ rootFolder: pkiDir }),
  connectionStrategy: { maxRetry: 1, initialDelay: 500, maxDelay: 2_000 },
});
try {
  await client.connect(job.endpointUrl);
  const session = await client.createSession();
  const namespace = (await session.readNamespaceArray()).indexOf(job.namespaceUri);
  const folder = `ns=${namespace};s=${job.folder}`;
  await browseWhole(session, folder); // warm-up
  const go = new Promise((resolve) => process.once("message", resolve));
  process.send?.({ ready: true });
  await go;
  let last = { references: 0, pieces: 0 };
  for (let round = 0; round < job.rounds; round++) last = await browseWhole(session, folder);
  await session.close();
  process.send?.(last);
} catch (error) {
  process.send?.({ error: error instanceof Error ? error.message : String(error) });
} finally {
  await client.disconnect();
  await rm(pkiDir, { recursive: true, force: true });
}
