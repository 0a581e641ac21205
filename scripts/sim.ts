/**
 * npm run sim -- --config FILE [--json] <Flow> '<input JSON>' … (infra/sim/cli.ts).
 * The warning filter comes first, before the imports that would trigger a dependency's
 * DEP0040 (punycode) notice on every run.
 */
process.removeAllListeners("warning");
process.on("warning", (w) => {
  if (w.name !== "ExperimentalWarning" && (w as { code?: string }).code !== "DEP0040") {
    process.stderr.write(`${w.name}: ${w.message}\n`);
  }
});
const { runCli } = await import("../infra/sim/cli.ts");
runCli();
