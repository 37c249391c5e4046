import { describe, expect, it } from "vitest";
import { checkRtuAnswer, rtuFrame, rtuRequest } from "./modbus-rtu-frame";

const readTwo = rtuRequest(1, Buffer.from([3, 0, 10, 0, 2]));

describe("RTU frames", () => {
  it("appends the CRC low byte first (Modbus over serial line 6.2.2: 01 03 00 00 00 01 -> 84 0A)", () => {
    expect([...rtuFrame(1, Buffer.from([3, 0, 0, 0, 1]))]).toEqual([1, 3, 0, 0, 0, 1, 0x84, 0x0a]);
  });

  it("takes an answer as data only when unit, function, byte count and length match the request", () => {
    const answer = rtuFrame(1, Buffer.from([3, 4, 0, 1, 0, 2]));
    expect(checkRtuAnswer(readTwo, answer)).toEqual({ kind: "data", data: Buffer.from([0, 1, 0, 2]) });
    expect(checkRtuAnswer(readTwo, rtuFrame(2, Buffer.from([3, 4, 0, 1, 0, 2])))).toMatchObject({ kind: "mismatch" });
    expect(checkRtuAnswer(readTwo, rtuFrame(1, Buffer.from([3, 2, 0, 1])))).toMatchObject({ kind: "mismatch" });
    expect(checkRtuAnswer(readTwo, rtuFrame(1, Buffer.from([0x83, 2])))).toEqual({ kind: "exception", code: 2 });
    expect(checkRtuAnswer(readTwo, rtuFrame(1, Buffer.from([0x84, 2])))).toMatchObject({ kind: "mismatch" });
  });

  it("refuses a write answer whose echo differs from the request", () => {
    const write = rtuRequest(1, Buffer.from([6, 0, 5, 0x12, 0x34]));
    expect(checkRtuAnswer(write, rtuFrame(1, Buffer.from([6, 0, 5, 0x12, 0x34])))).toMatchObject({ kind: "data" });
    expect(checkRtuAnswer(write, rtuFrame(1, Buffer.from([6, 0, 6, 0x12, 0x34])))).toMatchObject({ kind: "mismatch" });
  });
});
