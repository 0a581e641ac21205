import { main } from "./main.ts";

// A reader that stops early (`strongroom list | head`) closes stdout: that is not a
// failure of the command, whose work goes on; only its output has nowhere to go.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code !== "EPIPE") throw err;
});

// The program: the bin script in a checkout and the bundled image entrypoint both start here.
process.exitCode = await main(process.argv);
// archive_command and restore_command: once the answer is given, nothing may keep the
// process (a request the timeout abandoned still holds a socket), or PostgreSQL waits on it.
if (/^wal-(push|fetch)$/.test(process.argv.find((a, i) => i >= 2 && !a.startsWith("-")) ?? "")) {
  process.exit(process.exitCode);
}
