import { redact } from "../log.ts";

/** A state's caught error, as Step Functions hands it to a Catch: `{Error, Cause}`. */
export interface CaughtError {
  Error: string;
  Cause?: string;
}

/** What an audit row says about a failure: small, stable, no secrets. */
export interface FailureDetails {
  error: string;
  /** The worker container's exit code, when a task ran and exited. */
  exitCode?: number;
  /** ECS's stop code (EssentialContainerExited, TaskFailedToStart, …). */
  stopCode?: string;
  reason?: string;
}

/**
 * Summarises a caught error for the audit log. For `ecs:runTask.sync`, the Cause is the
 * task description as JSON; the exit code is read by container name, since a task may
 * have more than one container. A Lambda's Cause is `{errorType, errorMessage}`, of which
 * only the type is kept.
 */
export function describeFailure(caught: CaughtError, container = "worker"): FailureDetails {
  const details: FailureDetails = { error: caught.Error };
  let cause: unknown;
  try {
    cause = caught.Cause ? JSON.parse(caught.Cause) : undefined;
  } catch {
    if (caught.Cause) details.reason = clip(caught.Cause);
    return details;
  }
  if (typeof cause !== "object" || cause === null) return details;
  const task = cause as {
    StopCode?: string;
    StoppedReason?: string;
    Containers?: Array<{ Name?: string; ExitCode?: number; Reason?: string }>;
    errorType?: string;
    errorMessage?: string;
  };
  if (Array.isArray(task.Containers)) {
    const worker = task.Containers.find((c) => c.Name === container);
    if (typeof worker?.ExitCode === "number") details.exitCode = worker.ExitCode;
    if (task.StopCode) details.stopCode = task.StopCode;
    const reason = worker?.Reason ?? task.StoppedReason;
    if (reason) details.reason = clip(reason);
  } else if (task.errorType) {
    // A handler's message may quote what it was given; like the CLI's *.fail rows, the
    // audit row keeps the error's name only. ECS's own reasons (above) are AWS's text.
    details.error = task.errorType;
  }
  return details;
}

function clip(text: string): string {
  const one = redact(text).replace(/\s+/g, " ").trim();
  return one.length > 500 ? `${one.slice(0, 499)}…` : one;
}
