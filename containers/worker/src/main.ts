import type { Command } from "commander";
import { CommanderError } from "commander";
import {
  asStrongroomError,
  EXIT_INCONCLUSIVE,
  EXIT_WAL_FETCH_FATAL,
  UsageError,
  VerificationInconclusiveError,
  WalFileMissingError,
} from "#core/errors.ts";
import { redact } from "#core/log.ts";
import { nearestName } from "#core/nearest-name.ts";
import { buildProgram, programLogger } from "./cli.ts";
import { parseBool } from "./commands/options.ts";

/** Exit codes: 0 ok, 1 failure, 2 usage, 3 a verification that was inconclusive; wal-fetch: 1 not archived, 126 any other failure. */
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
    await program.parseAsync(physicalRestore(argv), { from: "node" });
    return 0;
  } catch (err) {
    // --help and --version land here too, with exit code 0.
    if (err instanceof CommanderError && (err.exitCode === 0 || err.code.startsWith("commander.help"))) {
      return err.exitCode === 0 ? 0 : 2;
    }
    const failure = err instanceof CommanderError ? usageError(err, running(), argv) : asStrongroomError(err);
    printError(program, running(), failure, err, wroteResult);
    // restore_command: only "not archived" may end a recovery; anything else, a usage
    // error included, must stop it (above 125), or PostgreSQL promotes a half-recovered cluster.
    if (isWalFetch(argv)) return failure instanceof WalFileMissingError ? 1 : EXIT_WAL_FETCH_FATAL;
    if (failure instanceof VerificationInconclusiveError) return EXIT_INCONCLUSIVE;
    return failure instanceof UsageError ? 2 : 1;
  }
}

/** `restore --pitr …` and `verify --pitr …` are the physical ones, commands of their own (commands/pitr.ts). */
function physicalRestore(argv: string[]): string[] {
  const at = commandIndex(argv);
  const command = argv[at];
  if (at < 0 || (command !== "restore" && command !== "verify") || !argv.includes("--pitr")) return argv;
  return [...argv.slice(0, at), `${command}-pitr`, ...argv.slice(at + 1)];
}

/** Where the command's name is in `argv`: the first word that is neither an option nor a global option's value. */
function commandIndex(argv: readonly string[]): number {
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i] as string;
    if (!a.startsWith("-")) return i;
    // The global options that take a value: --log-format json, --log-level debug.
    if (!a.includes("=") && (a === "--log-format" || a === "--log-level")) i++;
  }
  return -1;
}

/** Whether `argv` runs wal-fetch (its first argument that is not an option is the command). */
function isWalFetch(argv: readonly string[]): boolean {
  // Any word: an option's value before the command must not hide it (no %f or %p is this word).
  return argv.slice(2).includes("wal-fetch");
}

/**
 * The first option in `argv` that neither `command` nor its parents know, and the known
 * long option nearest to it. An option's value is skipped (`--target-database -x`).
 */
export function unknownOption(
  command: Command,
  argv: readonly string[],
): { flag: string; suggestion?: string } | undefined {
  const options = [];
  for (let c: Command | null = command; c; c = c.parent) options.push(...c.options);
  const byFlag = new Map<string, (typeof options)[number]>();
  for (const o of options) {
    if (o.long) byFlag.set(o.long, o);
    if (o.short) byFlag.set(o.short, o);
  }
  const builtIn = new Set(["-h", "--help", "-V", "--version"]);
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i] as string;
    if (token === "--") return undefined;
    if (!token.startsWith("-") || token === "-") continue;
    const flag = token.split("=", 1)[0] as string;
    const option = byFlag.get(flag);
    if (option) {
      if ((option.required || option.optional) && !token.includes("=")) i++;
      continue;
    }
    if (builtIn.has(flag)) continue;
    // `-j4`: a known short option with its value attached.
    if (!flag.startsWith("--") && byFlag.has(flag.slice(0, 2))) continue;
    const suggestion = nearestName(
      flag,
      [...byFlag.keys()].filter((f) => f.startsWith("--")),
    );
    return { flag, ...(suggestion ? { suggestion } : {}) };
  }
  return undefined;
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
function usageError(err: CommanderError, command: Command | undefined, argv: string[]): UsageError {
  let message = err.message.replace(/^error: /, "");
  // Commander checks required options before unknown ones, so a mistyped flag would be
  // reported as the option it was meant to be. An unknown option comes first, on one line.
  const unknown =
    err.code === "commander.unknownOption" || err.code === "commander.missingMandatoryOptionValue"
      ? command && unknownOption(command, argv)
      : undefined;
  if (unknown) {
    message = `unknown option '${unknown.flag}'${unknown.suggestion ? ` (did you mean ${unknown.suggestion}?)` : ""}`;
  } else if (err.code === "commander.missingMandatoryOptionValue" && command) {
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
