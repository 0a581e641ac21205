import type { Logger } from "@aws-lambda-powertools/logger";
import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import middy, { type MiddlewareObj, type MiddyfiedHandler } from "@middy/core";
import validator from "@middy/validator";
import { transpileSchema } from "@middy/validator/transpile";
import type { JSONSchemaType } from "ajv";
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
 * The schema of a handler whose logic checks its input itself, with messages of its own
 * (plan-restore): middy only requires an object, and the logic is handed `unknown`.
 */
export interface AnyObjectSchema {
  type: "object";
}

/**
 * A handler: input validated against `schema` (unknown fields rejected), Powertools
 * logging with the Lambda context, typed errors. `logic` is a thin call into core/.
 * The schema is typed by the input (`JSONSchemaType<I>`), so `npm run typecheck` fails
 * when the two disagree; an input that is only "an object" is `unknown` to the logic.
 */
export function lambda<I, O>(
  schema: JSONSchemaType<I>,
  logic: (input: I) => Promise<O>,
): MiddyfiedHandler<I, O, Error, Context>;
/** A handler whose logic checks its input itself: the schema only requires an object. */
export function lambda<O>(
  schema: AnyObjectSchema,
  logic: (input: unknown) => Promise<O>,
): MiddyfiedHandler<unknown, O, Error, Context>;
export function lambda<I, O>(schema: JSONSchemaType<I> | AnyObjectSchema, logic: (input: I) => Promise<O>) {
  return middy<I, O, Error, Context>()
    .use(typedErrors(logger))
    .use(injectLambdaContext(logger))
    .use(validator({ eventSchema: transpileSchema(schema) }))
    .handler(async (input: I) => logic(input));
}
