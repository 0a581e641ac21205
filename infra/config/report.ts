import * as path from "node:path";
import type { InvalidConfigError } from "#core/errors.ts";

/**
 * A config error as a terminal shows it: a line a problem, each naming the file and the
 * field (`strongroom.config.json: databases[1].id: …`), then the hint. No stack trace:
 * what is wrong is the file, not the code.
 */
export function configErrorText(err: InvalidConfigError): string {
  const lines = err.problems ?? [err.message];
  return `${lines.join("\n")}\n${err.hint ? `HINT: ${err.hint}\n` : ""}`;
}

/** A config file's path as a message names it: relative to the working directory when inside it. */
export function shownPath(file: string): string {
  const relative = path.relative(process.cwd(), file);
  return relative && !relative.startsWith("..") && !path.isAbsolute(relative) ? relative : file;
}
