import { main } from "./main.ts";

/**
 * The program, from process.argv to its exit code: the bin script in a checkout, the
 * bundled image entrypoint (run.ts) and the host's single executable (sea-main.ts) all
 * start here.
 */
export async function start(): Promise<void> {
  // A reader that stops early (`strongroom list | head`) closes stdout: that is not a
  // failure of the command, whose work goes on; only its output has nowhere to go.
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code !== "EPIPE") throw err;
  });
  // archive_command and restore_command stopped by a signal: out at once, with the exit
  // that tells PostgreSQL to retry (push) or to stop the recovery (fetch).
  const walCommand = process.argv.slice(2).find((a) => a === "wal-push" || a === "wal-fetch");
  if (walCommand) {
    for (const signal of ["SIGTERM", "SIGINT"] as const) {
      process.once(signal, () => process.exit(walCommand === "wal-fetch" ? 126 : 1));
    }
  }
  process.exitCode = await main(process.argv);
  // archive_command and restore_command: once the answer is given, nothing may keep the
  // process (a request the timeout abandoned still holds a socket), or PostgreSQL waits on it.
  if (walCommand) process.exit(process.exitCode);
}
