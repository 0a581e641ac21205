import { describe, expect, it } from "vitest";
import type { DatabaseSettings, FlowSettings, RestoreTargetSettings } from "#core/flows/flow-settings.ts";

export interface SettingsFixture {
  /** Settings holding exactly these databases and restore targets. */
  open: (o: { databases: DatabaseSettings[]; restoreTargets: RestoreTargetSettings[] }) => Promise<FlowSettings>;
}

export const database = (id: string, deep = false): DatabaseSettings => ({
  id,
  backupTaskDefinition: `arn:aws:ecs:eu-central-1:123456789012:task-definition/s_backup_${id}:3`,
  restoreTaskDefinition: `arn:aws:ecs:eu-central-1:123456789012:task-definition/s_restore_${id}:3`,
  verifyTaskDefinition: `arn:aws:ecs:eu-central-1:123456789012:task-definition/s_verify_${id}:3`,
  retention: { daily: 7, weekly: 4, monthly: 12, timeZone: "Europe/Berlin" },
  verify: { deep, maxAgeDays: 8 },
});

/** One suite, every place the flows read their settings from. */
export function flowSettingsContract(name: string, fixture: () => Promise<SettingsFixture>): void {
  describe(`FlowSettings contract: ${name}`, () => {
    it("gives one database's settings by id, and nothing for an id that is not configured", async () => {
      const f = await fixture();
      const settings = await f.open({ databases: [database("shop", true), database("billing")], restoreTargets: [] });
      expect(await settings.database("shop")).toEqual(database("shop", true));
      expect(await settings.database("shops")).toBeUndefined();
      expect(await settings.database("sho")).toBeUndefined();
      // Not a configured id, and not a way up the parameter path either.
      expect(await settings.database("../databases/shop")).toBeUndefined();
    });

    it("lists every database in id order, past a page of ten", async () => {
      const f = await fixture();
      const ids = Array.from({ length: 23 }, (_, i) => `db.${String(22 - i).padStart(2, "0")}`);
      const settings = await f.open({ databases: ids.map((id) => database(id)), restoreTargets: [] });
      expect((await settings.databases()).map((d) => d.id)).toEqual([...ids].sort());
    });

    it("lists the restore targets, and none when there are none", async () => {
      const f = await fixture();
      const staging: RestoreTargetSettings = {
        id: "staging",
        secretArn: "arn:aws:secretsmanager:eu-central-1:123456789012:secret:rds/staging-AbCdEf",
        restoreTaskDefinition: "arn:aws:ecs:eu-central-1:123456789012:task-definition/s_target_staging:1",
      };
      const withTarget = await f.open({ databases: [database("shop")], restoreTargets: [staging] });
      expect(await withTarget.restoreTargets()).toEqual([staging]);
      const without = await f.open({ databases: [database("shop")], restoreTargets: [] });
      expect(await without.restoreTargets()).toEqual([]);
    });
  });
}
