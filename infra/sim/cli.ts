/**
 * npm run sim -- --config FILE [--json] [--no-sandbox] <Flow> '<input JSON>' [<Flow> '<input JSON>' …]
 *
 * Runs the state machines that `cdk synth` makes from FILE, locally, in order, against
 * moto and DynamoDB Local (started here unless AWS_ENDPOINT_URL_* point elsewhere), with
 * the real handler modules and the worker CLI as the tasks, each run as Fargate would
 * run it (infra/sim/task-sandbox.ts) unless --no-sandbox. Prints one line per
 * execution (a JSON document with --json) on stdout; the functions' and tasks' logs go to
 * stderr. Exit 0 when every execution SUCCEEDED, 1 when one did not, 2 on bad usage.
 */
import { Command } from "commander";
import { asStrongroomError, InvalidConfigError, UsageError } from "#core/errors.ts";
import { configErrorText } from "../config/report.ts";
import type { WorkerError } from "./local-tasks.ts";
import { type ExecutionResult, Sim } from "./sim.ts";

const program = new Command("npm run sim --")
  .description("run the synthesized BackupFlow / RestoreFlow locally against stand-ins")
  .requiredOption("--config <file>", "the strongroom config to synthesize (its sim.secrets give the secrets' values)")
  .option("--json", "one JSON document per execution on stdout (with every AWS call and IAM's decision)")
  .option(
    "--no-sandbox",
    "run each task as a plain child process, not as Fargate would (its user, a read-only root, only its volumes writable, the image's environment); faster, and catches none of those faults",
  )
  .option("--no-iam", "do not enforce IAM: every principal may do anything (to measure what enforcing costs)")
  .argument("<executions...>", "pairs of a flow name and its input JSON")
  .addHelpText(
    "after",
    `
Examples:
  npm run sim -- --config sim.config.json BackupFlow '{"databaseId":"shop"}'
  npm run sim -- --config sim.config.json --json BackupFlow '{"databaseId":"shop"}' \\
      RestoreFlow '{"databaseId":"shop","backupId":"latest","target":{"database":"shop_restored"}}'`,
  )
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) });

function parseExecutions(args: string[]): Array<{ flow: string; input: unknown }> {
  if (args.length % 2 !== 0) {
    throw new UsageError("executions come in pairs: <Flow> '<input JSON>'", {
      hint: `npm run sim -- --config FILE BackupFlow '{"databaseId":"shop"}'`,
    });
  }
  const out: Array<{ flow: string; input: unknown }> = [];
  for (let i = 0; i < args.length; i += 2) {
    const flow = args[i] as string;
    try {
      out.push({ flow, input: JSON.parse(args[i + 1] as string) });
    } catch (err) {
      throw new UsageError(`the input for ${flow} is not JSON: ${(err as Error).message}`, {
        hint: 'quote it for the shell: \'{"databaseId":"shop"}\'',
      });
    }
  }
  return out;
}

function line(result: ExecutionResult, json: boolean): string {
  if (json) return JSON.stringify(result);
  const path = result.states.join(" → ");
  if (result.status === "SUCCEEDED") return `✓ ${result.flow} SUCCEEDED in ${result.seconds} s: ${path}`;
  const denied = (result.calls ?? []).filter((c) => c.decision !== "Allowed");
  const iam = denied.map((c) => `\n  IAM denied ${c.principal} ${c.action} on ${c.resource}`).join("");
  const worker = result.worker ? ` with ${reported(result.worker)}` : "";
  return `✗ ${result.flow} FAILED in ${result.seconds} s (${result.error}: ${why(result.cause)}${worker}): ${path}${iam}`;
}

/** The worker's error on one line: its name, its message and its hint (in the flow's input terms). */
function reported(e: WorkerError): string {
  const text = `${e.name}: ${e.message}${e.hint ? `; HINT: ${e.hint}` : ""}`;
  return text.replace(/\s*\n\s*/g, " | ");
}

/** A failure's Cause for a person: a function's message, or what became of the worker task. */
function why(cause: string | undefined): string {
  let parsed: { errorMessage?: string; StopCode?: string; StoppedReason?: string; Containers?: unknown[] };
  try {
    parsed = JSON.parse(cause ?? "");
  } catch {
    return cause ?? "no cause";
  }
  if (parsed.errorMessage) return parsed.errorMessage;
  if (parsed.StopCode) {
    const exit = (parsed.Containers as Array<{ ExitCode?: number }> | undefined)?.[0]?.ExitCode;
    return exit === undefined ? `${parsed.StopCode}: ${parsed.StoppedReason}` : `the worker exited ${exit}`;
  }
  return cause ?? "no cause";
}

async function main(): Promise<number> {
  try {
    program.parse();
  } catch (err) {
    const code = (err as { exitCode?: number }).exitCode;
    return code === 0 ? 0 : 2;
  }
  const options = program.opts<{ config: string; json?: boolean; sandbox: boolean; iam: boolean }>();
  const executions = parseExecutions(program.args);
  const sim = await Sim.start({ configFile: options.config, sandbox: options.sandbox, iam: options.iam });
  const interrupted = () => sim.abort();
  process.once("SIGINT", interrupted);
  process.once("SIGTERM", interrupted);
  try {
    // Every flow named before the first runs: a typo must not leave half the list done.
    for (const e of executions) sim.flow(e.flow);
    let failed = false;
    for (const e of executions) {
      const result = await sim.run(e.flow, e.input);
      process.stdout.write(`${line(result, options.json === true)}\n`);
      if (result.status !== "SUCCEEDED") failed = true;
    }
    return failed ? 1 : 0;
  } finally {
    await sim.stop();
  }
}

export function runCli(): void {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      const e = asStrongroomError(err);
      // A config's problems, one line each naming the file and the field, as cdk synth prints them.
      if (e instanceof InvalidConfigError && e.problems !== undefined) process.stderr.write(configErrorText(e));
      else process.stderr.write(`sim: ${e.name}: ${e.message}\n${e.hint ? `HINT: ${e.hint}\n` : ""}`);
      process.exitCode = e instanceof UsageError ? 2 : 1;
    },
  );
}
