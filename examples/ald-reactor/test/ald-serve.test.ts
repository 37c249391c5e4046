import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { OPCUACertificateManager } from "node-opcua-certificate-manager";
import {
  AttributeIds,
  DataType,
  MessageSecurityMode,
  OPCUAClient,
  SecurityPolicy,
  StatusCodes,
  UserTokenType,
} from "node-opcua-client";
import { afterAll, beforeAll, expect, test } from "vitest";
import { runAldDemo } from "../src/ald-demo";
import { ALD_DEMO_USERS } from "../src/ald-serve";
import { shortDemo } from "./support/short-demo";

let workDir: string;

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), "kiln-ald-serve-test-"));
});

afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

test(
  "--serve: a generic OPC UA client reads the reactor after the recipe; a viewer's write is refused",
  { timeout: 60_000 },
  async () => {
    const lines: string[] = [];
    const seen: {
      state?: string;
      pressure?: number;
      pressureStatus?: number;
      write?: number;
      start?: number;
      stateAfterSecondRun?: string;
      cyclesOfSecondRun?: number;
    } = {};
    const summary = await runAldDemo({
      ...shortDemo,
      outDir: path.join(workDir, "out"),
      log: (line) => lines.push(line),
      serve: {
        port: 0,
        allowInsecure: true,
        pkiDir: path.join(workDir, "server-pki"),
        until: async (endpointUrl) => {
          const manager = new OPCUACertificateManager({
            rootFolder: path.join(workDir, "client-pki"),
            automaticallyAcceptUnknownCertificate: true,
          });
          const client = OPCUAClient.create({
            clientCertificateManager: manager,
            securityMode: MessageSecurityMode.None,
            securityPolicy: SecurityPolicy.None,
            endpointMustExist: false,
            connectionStrategy: { maxRetry: 0 },
          });
          await client.connect(endpointUrl);
          try {
            const session = await client.createSession({
              type: UserTokenType.UserName,
              userName: "viewer",
              password: ALD_DEMO_USERS.viewer!.password,
            });
            const namespaces = (await session.readNamespaceArray()) as string[];
            const ns = namespaces.indexOf("urn:kiln:machine:ald-1");
            const [state, pressure] = await session.read([
              { nodeId: `ns=${ns};s=@Machine.State`, attributeId: AttributeIds.Value },
              { nodeId: `ns=${ns};s=chamber.pressure`, attributeId: AttributeIds.Value },
            ]);
            seen.state = state!.value.value as string;
            seen.pressure = pressure!.value.value as number;
            seen.pressureStatus = pressure!.statusCode.value;
            const write = await session.write({
              nodeId: `ns=${ns};s=valve.tma`,
              attributeId: AttributeIds.Value,
              value: { value: { dataType: DataType.Boolean, value: true } },
            });
            seen.write = write.value;
            await session.close();
            // adv20k L2/L3: an operator starts the reactor's recipe again over OPC UA after the demo's own run.
            // The summary is of the demo's run (its cycles, not both runs'), and counts the audited commands.
            const operator = await client.createSession({
              type: UserTokenType.UserName,
              userName: "operator",
              password: ALD_DEMO_USERS.operator!.password,
            });
            const started = await operator.call({
              objectId: `ns=${ns};s=@Machine`,
              methodId: `ns=${ns};s=@Machine.StartRecipe`,
              inputArguments: [
                { dataType: DataType.String, value: "ald-al2o3-demo" },
                { dataType: DataType.UInt32, value: 1 },
              ],
            });
            seen.start = started.statusCode.value;
            const valueOf = async (identifier: string) =>
              (await operator.read({ nodeId: `ns=${ns};s=${identifier}`, attributeId: AttributeIds.Value })).value
                .value as unknown;
            // The saved recipe runs with its default parameters (30 cycles): once the PLC counted one more
            // cycle, it is aborted.
            const cyclesBefore = (await valueOf("reactor.cycles")) as number;
            const until = Date.now() + 30_000;
            while (((await valueOf("reactor.cycles")) as number) <= cyclesBefore && Date.now() < until) {
              await new Promise((resolve) => setTimeout(resolve, 100));
            }
            await operator.call({
              objectId: `ns=${ns};s=@Machine`,
              methodId: `ns=${ns};s=@Machine.Abort`,
              inputArguments: [{ dataType: DataType.String, value: "test: the demo's summary is of its own run" }],
            });
            while ((await valueOf("@Machine.State")) === "processing" && Date.now() < until) {
              await new Promise((resolve) => setTimeout(resolve, 100));
            }
            seen.cyclesOfSecondRun = ((await valueOf("reactor.cycles")) as number) - cyclesBefore;
            seen.stateAfterSecondRun = (await valueOf("@Machine.State")) as string;
            await operator.close();
          } finally {
            await client.disconnect();
            await manager.dispose();
          }
        },
      },
    });
    const announced = lines.find((line) => line.startsWith("OPC UA server: opc.tcp://"));
    expect(announced).toBeDefined();
    // adv20 F6: the end of the recipe is told while serving goes on, and that the summary waits for the stop.
    // The demo's own run completed; on a failure this prints its reason and every line the demo said (CI stop 47).
    expect({ status: summary.process.status, reason: summary.process.reason, lines }).toMatchObject({
      status: "completed",
    });
    expect(lines).toContainEqual(
      expect.stringMatching(/^Recipe completed after [\d.]+ s; still serving at opc\.tcp:\/\/.* until stopped/),
    );
    expect(summary.ok).toBe(true);
    expect(seen.state).toBe("idle");
    expect(typeof seen.pressure).toBe("number");
    expect(seen.pressureStatus).toBe(StatusCodes.Good.value);
    expect(seen.write).toBe(StatusCodes.BadUserAccessDenied.value);
    expect(seen.start).toBe(StatusCodes.Good.value);
    expect(seen.stateAfterSecondRun).not.toBe("processing");
    // The second run moved the PLC's counter on, but the summary's cycles are the demo's own run's.
    expect(seen.cyclesOfSecondRun).toBeGreaterThanOrEqual(1);
    expect(summary.cycles.countedByPlc).toBe(shortDemo.cycles + seen.cyclesOfSecondRun!);
    expect(summary.cycles.completed).toBe(shortDemo.cycles);
    expect(summary.ok).toBe(true);
    // The viewer's refused write and the operator's StartRecipe, from OPC UA clients, beside the demo's own commands.
    expect(summary.audit.denied).toBeGreaterThanOrEqual(1);
    expect(summary.audit.fromOpcua).toBeGreaterThanOrEqual(2);
    expect(summary.audit.allowed).toBeGreaterThanOrEqual(2);
  },
);
