import { main } from "./main.ts";

// The program: the bin script in a checkout and the bundled image entrypoint both start here.
process.exitCode = await main(process.argv);
