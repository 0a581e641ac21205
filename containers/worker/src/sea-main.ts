import { start } from "./start.ts";

// The host's single executable (npm run build:host): a CommonJS main, so no top-level await.
start().catch((err: unknown) => {
  process.stderr.write(`strongroom: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
