import type { Command } from "commander";
import { CommanderError } from "commander";
import { asStrongroomError, UsageError } from "#core/errors.ts";
import { redact } from "#core/log.ts";
import { buildProgram, programLogger } from "./cli.ts";
import { parseBool } from "./commands/options.ts";

/** Exit codes: 0 ok, 1 failure, 2 usage. */
export async function main(argv: string[]): Promise<number> {
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    process.stderr.write(`strongroom: ${signal} received, stopping; nothing partial will be committed\n`);
    controller.abort(new Error(signal));
  };
  process.once("SIGTERM", onSignal);
  process.once("SIGINT", onSignal);
  let wroteResult = false;
  const { program, running } = buildProgram({
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
    // --help and --version land here too, with exit code 0.
    if (err instanceof CommanderError && (err.exitCode === 0 || err.code.startsWith("commander.help"))) {
      return err.exitCode === 0 ? 0 : 2;
    }
    const failure = err instanceof CommanderError ? usageError(err, running()) : asStrongroomError(err);
    printError(program, running(), failure, err, wroteResult);
    return failure instanceof UsageError ? 2 : 1;
  }
}

/**
 * The one place a failure is reported: a log line on stderr (text or JSON, as
 * --log-format says), the stacks at --log-level debug, and with --json a result
 * document on stdout, unless the command already printed its (failing) result there.
 */
function printError(
  program: Command,
  command: Command | undefined,
  failure: ReturnType<typeof asStrongroomError>,
  thrown: unknown,
  wroteResult: boolean,
): void {
  const { name } = failure;
  // One line: multi-line tool output (pg_restore's ERROR/DETAIL/CONTEXT) is joined.
  const message = redact(failure.message).replace(/\s*\n\s*/g, " | ");
  const hint = failure.hint ? redact(failure.hint) : undefined;
  const log = programLogger(program);
  log.error(message, { error: name, ...(hint ? { hint } : {}) });
  for (let e: unknown = thrown; e instanceof Error; e = e.cause) {
    if (e.stack) log.debug(e.stack);
  }
  if (wantsJson(command) && !wroteResult) {
    process.stdout.write(`${JSON.stringify({ ok: false, error: { name, message, hint } })}\n`);
  }
}

/**
 * A usage error commander found (a missing or unknown option, a bad choice) as our own
 * UsageError: a missing option names its environment variable, the hint names --help.
 */
function usageError(err: CommanderError, command: Command | undefined): UsageError {
  let message = err.message.replace(/^error: /, "");
  if (err.code === "commander.missingMandatoryOptionValue" && command) {
    const option = command.options.find((o) => message.includes(`'${o.flags}'`));
    if (option?.envVar) message += ` (give it, or set ${option.envVar})`;
  }
  const path: string[] = [];
  for (let c: Command | null = command ?? null; c?.parent; c = c.parent) path.unshift(c.name());
  return new UsageError(message, { cause: err, hint: `strongroom ${[...path, "--help"].join(" ")} shows the usage` });
}

/**
 * Whether the failing command asked for --json: its parsed option, or, when it failed
 * while its options were still being parsed, STRONGROOM_JSON read leniently (its strict
 * parse is what may have failed).
 */
function wantsJson(command: Command | undefined): boolean {
  const parsed = command?.opts<{ json?: boolean }>().json;
  if (parsed !== undefined) return parsed;
  try {
    return parseBool(process.env.STRONGROOM_JSON, "STRONGROOM_JSON") === true;
  } catch {
    return false;
  }
}
