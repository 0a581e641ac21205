import { randomUUID } from "node:crypto";
import { PutParameterCommand, SSMClient } from "@aws-sdk/client-ssm";
import { describe, expect, inject, it } from "vitest";
import { InvalidConfigError } from "#core/errors.ts";
import { ParameterStoreSettings, StaticSettings, settingsParameter } from "#core/flows/flow-settings.ts";
import { database, flowSettingsContract } from "./flow-settings.contract.ts";

/** moto serves SSM at the same endpoint as S3. */
const ssm = () => new SSMClient({ endpoint: inject("s3Endpoint") });

async function putParameter(name: string, value: unknown): Promise<void> {
  const Value = typeof value === "string" ? value : JSON.stringify(value);
  await ssm().send(new PutParameterCommand({ Name: name, Value, Type: "String", Overwrite: true }));
}

flowSettingsContract("in memory", async () => ({ open: async (o) => new StaticSettings(o) }));

flowSettingsContract("SSM Parameter Store (moto)", async () => ({
  open: async (o) => {
    const path = `/strongroom/c${randomUUID().slice(0, 8)}`;
    for (const d of o.databases) await putParameter(settingsParameter.database(path, d.id), d);
    for (const t of o.restoreTargets) await putParameter(settingsParameter.restoreTarget(path, t.id), t);
    return new ParameterStoreSettings(ssm(), path);
  },
}));

describe("settings read from Parameter Store", () => {
  it("refuses a parameter edited into something that is not a setting, naming it, rather than plan from half of one", async () => {
    const path = `/strongroom/c${randomUUID().slice(0, 8)}`;
    const name = settingsParameter.database(path, "shop");
    await putParameter(name, { ...database("shop"), retention: { daily: 7 } });
    const settings = new ParameterStoreSettings(ssm(), path);
    await expect(settings.database("shop")).rejects.toThrow(InvalidConfigError);
    await expect(settings.database("shop")).rejects.toThrow(`parameter ${name} is not a strongroom setting`);
    await putParameter(name, "{not json");
    await expect(settings.databases()).rejects.toThrow(`parameter ${name} is not JSON`);
  });

  it("says it runs only deployed when SETTINGS_PATH is missing (an env value that looks false)", async () => {
    for (const path of ["", "strongroom/x", "/strongroom/x/"]) {
      await expect(new ParameterStoreSettings(ssm(), path).databases(), JSON.stringify(path)).rejects.toThrow(
        /SETTINGS_PATH .* is not a parameter path/,
      );
    }
  });
});
