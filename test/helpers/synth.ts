import { type CfnResource, type CfnTemplate, LocalNames, synthesize } from "../../infra/sim/template.ts";

/**
 * The synthesized deployment as the template tests read it: the parent stack and every
 * nested stack, each resource keyed `<id>` in the parent and `<nested id>/<id>` in a
 * nested stack, with the LocalNames that resolve it (as the sim resolves it).
 */
export interface Synthesized {
  stackName: string;
  parent: CfnTemplate;
  nested: Map<string, CfnTemplate>;
  /** Every resource of every stack. */
  resources: Record<string, CfnResource & { Properties: Record<string, unknown> }>;
  /** The names that resolve the resource with this key. */
  namesOf(key: string): LocalNames;
  /** The resource's logical id within its own stack. */
  localId(key: string): string;
  /** Every stack's LocalNames, the parent's first. */
  stacks: LocalNames[];
}

export const ACCOUNT = "123456789012";

export function synthesizeAll(configFile: string, region = "eu-central-1"): Synthesized {
  const { stackName, template, nested } = synthesize(configFile);
  const parent = new LocalNames(template, stackName, { account: ACCOUNT, region });
  const nestedNames = parent.nestedNames(nested);
  const byStack = new Map<string, LocalNames>([["", parent]]);
  [...nested.keys()].forEach((id, i) => {
    byStack.set(id, nestedNames[i] as LocalNames);
  });
  const resources: Synthesized["resources"] = {};
  for (const [id, r] of Object.entries(template.Resources)) {
    resources[id] = { ...r, Properties: r.Properties ?? {} };
  }
  for (const [stackId, t] of nested) {
    for (const [id, r] of Object.entries(t.Resources)) {
      resources[`${stackId}/${id}`] = { ...r, Properties: r.Properties ?? {} };
    }
  }
  const split = (key: string): [string, string] => {
    const i = key.indexOf("/");
    return i < 0 ? ["", key] : [key.slice(0, i), key.slice(i + 1)];
  };
  return {
    stackName,
    parent: template,
    nested,
    resources,
    namesOf: (key) => byStack.get(split(key)[0]) as LocalNames,
    localId: (key) => split(key)[1],
    stacks: [parent, ...nestedNames],
  };
}

type Statement = { Effect: string; Action: string | string[]; Resource: unknown; Condition?: unknown };

/**
 * Every policy document that applies to the role with this key, resolved: its inline
 * `Policies` and each AWS::IAM::Policy of its stack that names it.
 */
export function rolePolicies(
  s: Synthesized,
  roleKey: string,
): Array<{ name: string; policy: { Statement: Statement[] } }> {
  const names = s.namesOf(roleKey);
  const role = names.resolve(s.resources[roleKey]?.Properties ?? {}) as {
    Policies?: Array<{ PolicyName: string; PolicyDocument: { Statement: Statement[] } }>;
  };
  const roleName = names.ref(s.localId(roleKey));
  const stackPrefix = roleKey.includes("/") ? `${roleKey.slice(0, roleKey.indexOf("/"))}/` : "";
  const attached = Object.entries(s.resources)
    .filter(
      ([key, r]) => r.Type === "AWS::IAM::Policy" && (stackPrefix ? key.startsWith(stackPrefix) : !key.includes("/")),
    )
    .map(([key, r]) => ({ key, properties: names.resolve(r.Properties) as Record<string, unknown> }))
    .filter((p) => (p.properties.Roles as string[]).includes(roleName))
    .map((p) => ({ name: p.key, policy: p.properties.PolicyDocument as { Statement: Statement[] } }));
  return [...(role.Policies ?? []).map((p) => ({ name: p.PolicyName, policy: p.PolicyDocument })), ...attached];
}

/** The one role whose logical id (in its own stack) starts with `prefix`, by key; fails on none or several. */
export function roleKey(s: Synthesized, prefix: string): string {
  const found = Object.entries(s.resources)
    .filter(([key, r]) => r.Type === "AWS::IAM::Role" && s.localId(key).startsWith(prefix))
    .map(([key]) => key);
  if (found.length !== 1) throw new Error(`${found.length} roles named ${prefix}…: ${found.join(", ")}`);
  return found[0] as string;
}

/** The role's ARN, as the sim names it (its path included). */
export function roleArn(s: Synthesized, key: string): string {
  return s.namesOf(key).getAtt(s.localId(key), "Arn");
}
