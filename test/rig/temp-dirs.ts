import { afterAll } from "vitest";
import { removeHookTempDirs } from "../helpers/temp.ts";

// A setup file's afterAll runs after the test file's own (hooks unwind as a stack), so a
// cluster a file stops in its afterAll is stopped before its directory goes.
afterAll(removeHookTempDirs);
