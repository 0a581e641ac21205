import { Names, Stack, Tokenization, Validations } from "aws-cdk-lib";
import type { IConstruct } from "constructs";

/**
 * cdk-nag acknowledgements scoped to one finding on one construct. A wildcard finding
 * names the resource as cdk-nag renders it (`<Logical.Arn>/pg/*`), so a new wildcard
 * elsewhere, or on another resource of the same construct, is still reported.
 */
export function acknowledgeWildcard(construct: IConstruct, resource: string, reason: string): void {
  Validations.of(construct).acknowledge({
    id: `AwsSolutions-IAM5[Resource::${nagRender(construct, resource)}]`,
    reason,
  });
}

export function acknowledge(construct: IConstruct, rule: string, reason: string): void {
  Validations.of(construct).acknowledge({ id: `AwsSolutions-${rule}`, reason });
}

/**
 * A resource string with its tokens as cdk-nag prints them: GetAtt → `<Id.Attr>`, Ref →
 * `<Id>`. In a nested stack, a reference to the parent's resource becomes a parameter
 * named `referenceto<Parent><Id><Attr>` (CDK's naming), which cdk-nag prints as `<that>`.
 */
function nagRender(scope: IConstruct, value: string): string {
  const stack = Stack.of(scope);
  // References to another stack's resources, as this stack will render them.
  const foreign = new Map<string, string>();
  for (const token of Tokenization.reverseString(value).tokens) {
    const target = (token as { target?: IConstruct }).target;
    if (!target || Stack.of(target) === stack) continue;
    const resolved = stack.resolve(token) as Record<string, unknown>;
    const attr = Array.isArray(resolved["Fn::GetAtt"]) ? (resolved["Fn::GetAtt"] as string[])[1] : "Ref";
    foreign.set(JSON.stringify(resolved), `<referenceto${Names.nodeUniqueId(target.node)}${attr}>`);
  }
  const render = (v: unknown): string => {
    if (typeof v === "string") return v;
    if (typeof v !== "object" || v === null) return String(v);
    const o = v as Record<string, unknown>;
    const reference = foreign.get(JSON.stringify(v));
    if (reference !== undefined) return reference;
    if (Array.isArray(o["Fn::GetAtt"])) return `<${(o["Fn::GetAtt"] as string[]).join(".")}>`;
    if (typeof o.Ref === "string") return `<${o.Ref}>`;
    if (Array.isArray(o["Fn::Join"])) {
      const [sep, parts] = o["Fn::Join"] as [string, unknown[]];
      return parts.map(render).join(sep);
    }
    return JSON.stringify(v);
  };
  return render(stack.resolve(value));
}
