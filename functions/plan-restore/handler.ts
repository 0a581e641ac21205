import { type FlowSettings, settingsFromEnv } from "#core/flows/flow-settings.ts";
import { planRestore, type TaskPlan } from "#core/flows/plan.ts";
import { committedIn, type LedgerDeps, ledgerDepsFromEnv } from "../common/deps.ts";
import { type AnyObjectSchema, lambda } from "../common/lambda.ts";

/**
 * RestoreFlow's first state: checks the console's input (no password, no unknown field)
 * before any task runs, resolves `latest`, and picks the task definition for the target.
 * The input is checked by core's checkRestoreRequest, whose messages name the problem
 * (a password field gets its own), so middy's schema here only requires an object.
 */
export const schema: AnyObjectSchema = { type: "object" };

export interface Deps extends LedgerDeps {
  settings: FlowSettings;
}

export const createHandler = (deps: Deps) =>
  lambda<TaskPlan & { target: string; manifestSha256: string }>(schema, async (input: unknown) =>
    planRestore(deps.settings, input, committedIn(deps)),
  );

/** What the deployed function is given, from its environment (npm run sim passes the template's). */
export const depsFromEnv = (env: NodeJS.ProcessEnv = process.env): Deps => ({
  ...ledgerDepsFromEnv(env),
  settings: settingsFromEnv(env),
});

export const handler = createHandler(depsFromEnv());
