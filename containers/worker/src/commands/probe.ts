import type { Command } from "commander";
import { StoreAuditLog } from "#core/audit/store-audit-log.ts";
import { ProbeFailedError } from "#core/errors.ts";
import type { ProbeReport } from "#core/probe.ts";
import { type CliContext, openStoreAt, printResult } from "./context.ts";
import { jsonOption, storeOption } from "./options.ts";

export function probeCommand(parent: Command, ctx: CliContext): void {
  parent
    .command("probe")
    .description(
      "check a destination: list, write, read back, delete a probe object; report versioning and Object Lock",
    )
    .addOption(storeOption())
    .addOption(jsonOption())
    .addHelpText(
      "after",
      "\nExamples:\n  $ strongroom probe --store s3://acme-backups/pg\n  $ strongroom probe --store file:///var/backups/pg --json",
    )
    .action(async (o: { store: string; json?: boolean }) => {
      const { probeDestination } = await import("#core/probe.ts");
      const store = await openStoreAt(o.store);
      const report = await probeDestination(store, { audit: new StoreAuditLog(store, "org"), actor: "cli" });
      printResult(ctx, o.json, report, () => probeText(report));
      if (!report.ok)
        throw new ProbeFailedError(report.failure ?? "probe failed", report.hint ? { hint: report.hint } : {});
    });
}

function probeText(report: ProbeReport): string {
  // As wide as the longest step named (conditional), so that the times line up.
  const width = Math.max(0, ...report.steps.map((s) => s.step.length));
  const steps = report.steps.map(
    (s) =>
      `${s.ok ? "ok  " : "FAIL"} ${s.step.padEnd(width)} ${s.latencyMs.toFixed(1).padStart(8)} ms${s.detail ? `  ${s.detail}` : ""}\n`,
  );
  const protection = report.protection
    ? `versioning: ${report.protection.versioning}; object lock: ${report.protection.objectLock}\n`
    : "";
  return steps.join("") + protection;
}
