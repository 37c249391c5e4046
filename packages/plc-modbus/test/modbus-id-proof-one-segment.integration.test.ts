import { afterEach, expect, it } from "vitest";
import net from "node:net";
import { defineTags } from "@kiln/core";
import { ModbusDriver } from "../src/index";

// Issue #12, ADR 0041 fix12f (H2 of the adv12f pass): the id proof's two reads leave in one write, so they reach the
// peer together (one TCP segment on loopback). Written apart, a read-ahead gateway that stamps the newest id
// answered the first before the second arrived (0.4 ms was enough) and passed the proof with its own id.
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

it("#12 fix12f: the id proof's two reads reach the peer in one segment", async () => {
  // Each data chunk the peer got, as the request quantities of the frames in it.
  const chunks: number[][] = [];
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    let buffer = Buffer.alloc(0);
    socket.on("data", (data) => {
      buffer = Buffer.concat([buffer, data]);
      const quantities: number[] = [];
      while (buffer.length >= 12 && buffer.length >= 6 + buffer.readUInt16BE(4)) {
        const frame = buffer.subarray(0, 6 + buffer.readUInt16BE(4));
        buffer = buffer.subarray(frame.length);
        const quantity = frame.readUInt16BE(10);
        quantities.push(quantity);
        const pdu = Buffer.alloc(2 + 2 * quantity);
        pdu[0] = frame[7]!;
        pdu[1] = 2 * quantity;
        const header = Buffer.alloc(7);
        frame.copy(header, 0, 0, 4);
        header.writeUInt16BE(pdu.length + 1, 4);
        header[6] = frame[6]!;
        setTimeout(() => socket.destroyed || socket.write(Buffer.concat([header, pdu])), 2);
      }
      chunks.push(quantities);
    });
    socket.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(() => new Promise((resolve) => server.close(() => resolve())));
  const driver = new ModbusDriver({
    transport: { kind: "tcp", host: "127.0.0.1", port: (server.address() as net.AddressInfo).port },
    requestTimeoutMs: 300,
  });
  cleanups.push(() => driver.close());
  await driver.connect();
  const tags = defineTags({
    a: { dataType: "uint16", address: "HR0@1" },
    b: { dataType: "uint16", address: "HR100@1" },
    c: { dataType: "uint16", address: "HR200@1" },
  });
  for (let scan = 0; scan < 3; scan++) await driver.read(tags.list());
  // The proof: the only reads of more than one register, both in one chunk.
  const proof = chunks.filter((quantities) => quantities.some((quantity) => quantity > 1));
  expect(proof).toHaveLength(1);
  expect(proof[0]).toHaveLength(2);
}, 20_000);
