import { describe, expect, it } from "vitest";
import { InsufficientMemoryError } from "../errors.ts";
import { assertUploadFits, partSizeFor } from "./s3-store.ts";

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
});
