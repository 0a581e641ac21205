import { CommanderError } from "commander";
import { asStrongroomError, UsageError } from "#core/errors.ts";
import { redact } from "#core/log.ts";
import { buildProgram } from "./cli.ts";
import { parseBool } from "./cli-common.ts";

/** Exit codes: 0 ok, 1 failure, 2 usage. */
export async function main(argv: string[]): Promise<number> {
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    process.stderr.write(`strongroom: ${signal} received, stopping; nothing partial will be committed\n`);
    controller.abort(new Error(signal));
  };
  process.once("SIGTERM", onSignal);
  process.once("SIGINT", onSignal);
  let jsonEnv: boolean | undefined;
  try {
    jsonEnv = parseBool(process.env.STRONGROOM_JSON, "STRONGROOM_JSON");
  } catch {
    jsonEnv = undefined; // the command's own parse reports it as a usage error
  }
  const json = argv.includes("--json") || jsonEnv === true;
  let wroteResult = false;
  const program = buildProgram({
    signal: controller.signal,
    stdout: (s) => {
      wroteResult = true;
      process.stdout.write(s);
    },
  });
  try {
    await program.parseAsync(argv, { from: "node" });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version land here too, with exit code 0.
      return err.exitCode === 0 ? 0 : 2;
    }
    const failure = asStrongroomError(err);
    const usage = failure instanceof UsageError;
    const { name } = failure;
    // One line: multi-line tool output (pg_restore's ERROR/DETAIL/CONTEXT) is joined.
    const message = redact(failure.message).replace(/\s*\n\s*/g, " | ");
    const hint = failure.hint ? redact(failure.hint) : undefined;
    const globals = program.opts<{ logFormat?: string; logLevel?: string }>();
    if (globals.logFormat === "json") {
      process.stderr.write(
        `${JSON.stringify({ level: "error", time: new Date().toISOString(), error: name, message, hint })}\n`,
      );
    } else {
      process.stderr.write(`strongroom: error: ${message} [${name}]\n${hint ? `HINT: ${hint}\n` : ""}`);
    }
    if (globals.logLevel === "debug") {
      for (let e: unknown = err; e instanceof Error; e = e.cause) {
        if (e.stack) process.stderr.write(`${redact(e.stack)}\n`);
      }
    }
    // A command that already printed its (failing) result document keeps stdout to that one document.
    if (json && !wroteResult)
      process.stdout.write(`${JSON.stringify({ ok: false, error: { name, message, hint } })}\n`);
    return usage ? 2 : 1;
  }
}
