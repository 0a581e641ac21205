import { describe, expect, it } from "vitest";
import { InsufficientMemoryError } from "../errors.ts";
import { assertUploadFits, partSizeFor, queueSizeFor } from "./s3-store.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

describe("S3 upload memory", () => {
  it("refuses, before starting, an upload whose part buffers exceed half the memory available", () => {
    // A 5 TiB database needs ~768 MiB parts; three of them do not fit a 2 GiB task.
    const part = partSizeFor(5 * 1024 * GiB);
    expect(() => assertUploadFits(part, 2, 2 * GiB)).toThrow(InsufficientMemoryError);
    expect(() => assertUploadFits(part, 2, 2 * GiB)).toThrow(/needs \d+ MiB of buffers \(3 parts of \d+ MiB\)/);
  });

  it("lets an ordinary upload start on a small task", () => {
    expect(() => assertUploadFits(partSizeFor(50 * GiB), 2, 512 * MiB)).not.toThrow();
  });

  it("sizes parts from the database size and the queue from a fixed buffer budget", () => {
    // Up to ~50 GiB: 8 MiB parts, three uploading and one filling (32 MiB).
    expect(partSizeFor(GiB)).toBe(8 * MiB);
    expect(queueSizeFor(8 * MiB)).toBe(3);
    // Larger: parts grow so that 10,000 cover 1.5× the size; the queue shrinks, never below 1.
    expect(partSizeFor(100 * GiB)).toBe(16 * MiB);
    expect(queueSizeFor(16 * MiB)).toBe(1);
    expect(queueSizeFor(768 * MiB)).toBe(1);
    // A size this small or unknown still gets the minimum: 78 GiB at 10,000 parts.
    expect(partSizeFor(undefined) * 10_000).toBeGreaterThan(78 * GiB);
  });
});
