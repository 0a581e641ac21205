import { main } from "./main.ts";

// A reader that stops early (`strongroom list | head`) closes stdout: that is not a
// failure of the command, whose work goes on; only its output has nowhere to go.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code !== "EPIPE") throw err;
});

// The program: the bin script in a checkout and the bundled image entrypoint both start here.
process.exitCode = await main(process.argv);
