import type { Logger } from "@aws-lambda-powertools/logger";
import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import middy, { type MiddlewareObj } from "@middy/core";
import validator from "@middy/validator";
import { transpileSchema } from "@middy/validator/transpile";
import type { Context } from "aws-lambda";
import { InvalidInputError } from "#core/errors.ts";
import { createLogger } from "#core/log.ts";

/** The same logger as the CLI's (JSON here), so every line is redacted the same way. */
export const logger = createLogger({ format: "json" });

/**
 * Turns middy's validation failure into InvalidInputError (a stable name Step Functions
 * can match) and logs every failure once, redacted.
 */
const typedErrors = (log: Logger): MiddlewareObj => ({
  onError: async (request) => {
    const err = request.error as
      | (Error & {
          cause?: {
            package?: string;
            data?: Array<{ instancePath: string; message?: string; params?: Record<string, unknown> }>;
          };
        })
      | undefined;
    if (err?.cause?.package === "@middy/validator") {
      const problems = (err.cause.data ?? []).map(
        (e) =>
          `${e.instancePath || "event"} ${e.message}${e.params?.additionalProperty ? ` '${e.params.additionalProperty}'` : ""}`,
      );
      request.error = new InvalidInputError(`invalid input: ${problems.join("; ")}`, { cause: err });
    }
    const final = request.error as Error;
    log.error("handler failed", { error: final.name, reason: final.message });
  },
});

/**
 * A handler: input validated against `schema` (unknown fields rejected), Powertools
 * logging with the Lambda context, typed errors. `logic` is a thin call into core/.
 */
export function lambda<I, O>(schema: Record<string, unknown>, logic: (input: I) => Promise<O>) {
  return middy<I, O, Error, Context>()
    .use(typedErrors(logger))
    .use(injectLambdaContext(logger))
    .use(validator({ eventSchema: transpileSchema(schema) }))
    .handler(async (input: I) => logic(input));
}
