import { Command, Option } from "commander";
import { createLogger, type LogFormat, type LogLevel } from "#core/log.ts";
import { auditCommand } from "./commands/audit.ts";
import { backupCommand } from "./commands/backup.ts";
import { catalogCommand } from "./commands/catalog.ts";
import type { CliContext } from "./commands/context.ts";
import { exportSchemaCommand } from "./commands/export-schema.ts";
import { gcCommand } from "./commands/gc.ts";
import { keygenCommand } from "./commands/keygen.ts";
import { listCommand } from "./commands/list.ts";
import { settleOptions } from "./commands/options.ts";
import { pitrCommands } from "./commands/pitr.ts";
import { probeCommand } from "./commands/probe.ts";
import { pruneCommand } from "./commands/prune.ts";
import { recoverTableCommand } from "./commands/recover-table.ts";
import { restoreCommand } from "./commands/restore.ts";
import { statusCommand } from "./commands/status.ts";
import { verifyCommand } from "./commands/verify.ts";
import { clearProgressLine } from "./progress.ts";
import { WORKER_VERSION } from "./version.ts";

export interface GlobalOptions {
  logFormat: LogFormat;
  logLevel: LogLevel;
}

/** The commands, in the order `--help` lists them. Each file under commands/ adds one. */
const COMMANDS = [
  keygenCommand,
  backupCommand,
  listCommand,
  restoreCommand,
  recoverTableCommand,
  exportSchemaCommand,
  verifyCommand,
  statusCommand,
  auditCommand,
  catalogCommand,
  pruneCommand,
  gcCommand,
  probeCommand,
  pitrCommands,
];

export interface Program {
  program: Command;
  /** The command being run, once commander has dispatched to it (for the error printer). */
  running: () => Command | undefined;
}

/** The strongroom CLI: global options, then every command; no command logic here. */
export function buildProgram(io: Omit<CliContext, "log" | "logFormat">): Program {
  const program = new Command("strongroom")
    .description("PostgreSQL backups you own and can prove: pg_dump → zstd → age → your store")
    .version(WORKER_VERSION)
    .addOption(
      new Option("--log-format <format>", "log lines on stderr: text or json")
        .choices(["text", "json"])
        .default("text")
        .env("STRONGROOM_LOG_FORMAT"),
    )
    .addOption(
      new Option("--log-level <level>", "least severe level logged")
        .choices(["debug", "info", "warn", "error"])
        .default("info")
        .env("STRONGROOM_LOG_LEVEL"),
    )
    .hook("preAction", (_program, action) => settleOptions(action))
    .exitOverride()
    // Commander's own usage errors are reported by main.ts's error printer, like every other
    // failure: one line (or one JSON document), naming the env var that can supply a missing option.
    .configureOutput({
      writeOut: (s) => io.stdout(s),
      writeErr: (s) => process.stderr.write(s),
      outputError: () => undefined,
    });

  const ctx: CliContext = {
    ...io,
    log: () => programLogger(program),
    logFormat: () => program.opts<GlobalOptions>().logFormat,
  };
  for (const add of COMMANDS) add(program, ctx);

  // Remember the innermost command commander dispatches to, at every level (audit → verify),
  // so that a failure is reported in the format that command's own --json asked for.
  let running: Command | undefined;
  const track = (command: Command) => {
    command.hook("preSubcommand", (_parent, sub) => {
      running = sub;
    });
    for (const sub of command.commands) track(sub);
  };
  track(program);
  return { program, running: () => running };
}

/** The logger the global options ask for. */
export function programLogger(program: Command) {
  const g = program.opts<GlobalOptions>();
  return createLogger({
    format: g.logFormat,
    level: g.logLevel,
    write: (line) => {
      clearProgressLine();
      process.stderr.write(line);
    },
  });
}
