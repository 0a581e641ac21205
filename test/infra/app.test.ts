import { Template } from "aws-cdk-lib/assertions";
import { describe, expect, it } from "vitest";
import { buildApp } from "../../infra/app.ts";

describe("cdk app", () => {
  it("synthesizes the Strongroom stack offline", () => {
    // GIVEN / WHEN
    const assembly = buildApp().synth();
    // THEN
    const stack = assembly.getStackByName("Strongroom");
    expect(stack.template).toBeDefined();
    // An empty stack for now: only the bootstrap-version rule and parameter.
    expect(Object.keys(Template.fromJSON(stack.template).toJSON())).toEqual(
      expect.arrayContaining(["Parameters", "Rules"]),
    );
  });
});
