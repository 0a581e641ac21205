/**
 * What the deployed flows know about the databases, handed by the CDK app to the plan
 * Lambdas (as FLOW_SETTINGS, JSON): which task definition runs each duty for which
 * database, and each database's retention. Nothing secret: secrets stay in Secrets
 * Manager and reach the tasks through their task definitions.
 */
export interface FlowSettings {
  /** The worker container's name in every task definition. */
  container: string;
  databases: Array<{
    id: string;
    backupTaskDefinition: string;
    /** Restores into this database's own server (its secret). */
    restoreTaskDefinition: string;
    /** Restores into a scratch cluster inside the task and checks it (no database secret). */
    verifyTaskDefinition: string;
    retention: { daily: number; weekly: number; monthly: number; timeZone: string };
    verify: { deep: boolean; maxAgeDays: number };
  }>;
  /** Other servers a restore may target, by the secret holding their connection. */
  restoreTargets: Array<{ id: string; secretArn: string; restoreTaskDefinition: string }>;
}

export function parseFlowSettings(text: string | undefined): FlowSettings {
  if (!text) throw new Error("FLOW_SETTINGS is not set: this handler runs only in a deployed strongroom");
  return JSON.parse(text) as FlowSettings;
}
