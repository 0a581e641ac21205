import { main } from "./main.ts";

// A reader that stops early (`strongroom list | head`) closes stdout: that is not a
// failure of the command, whose work goes on; only its output has nowhere to go.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code !== "EPIPE") throw err;
});

// The program: the bin script in a checkout and the bundled image entrypoint both start here.
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
if (process.argv.slice(2).some((a) => a === "wal-push" || a === "wal-fetch")) {
  process.exit(process.exitCode);
}
