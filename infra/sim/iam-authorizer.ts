import { createHash } from "node:crypto";
import { anonymousPrincipal, runSimulation } from "@cloud-copilot/iam-simulate";
import type { NamedPolicy, TemplatePolicies } from "./iam-policies.ts";
import type { Place } from "./template.ts";

/**
 * IAM's decision for each call a principal of the deployment makes in the sim, by
 * @cloud-copilot/iam-simulate over the template's identity policies and the resource's
 * own policy, as AWS evaluates a same-account request. Every decision is recorded.
 * The principals are the template's roles, each as a session (an assumed role), with a
 * made-up access key by which the IAM gateway knows it.
 */

/** A role's session: what a function, a task or a flow runs as. */
export interface Principal {
  roleArn: string;
  /** `arn:aws:sts::<account>:assumed-role/<role name>/<session>`, as AWS names the caller. */
  arn: string;
}

/** One request as IAM sees it: the action, the resource and the condition keys we can supply. */
export interface IamRequest {
  action: string;
  resource: string;
  context?: Record<string, string | string[]>;
}

export type Decision = "Allowed" | "ImplicitlyDenied" | "ExplicitlyDenied";

/** A call, recorded: who asked for what, and IAM's answer. */
export interface IamCall {
  /** The caller's session ARN, `anonymous`, or `unknown access key …`. */
  principal: string;
  action: string;
  resource: string;
  context?: Record<string, string | string[]>;
  decision: Decision;
  /** For a denied call: AWS's message, `User: … is not authorized to perform: …`. */
  message?: string;
}

export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
}

export class Authorizer {
  /** Every call decided, in order; the sim empties it per execution. */
  calls: IamCall[] = [];
  private readonly policies: TemplatePolicies;
  private readonly place: Place;
  private readonly byKey = new Map<string, Principal>();
  /** Decisions by request: a multipart upload asks the same question for every part. */
  private readonly decided = new Map<string, Promise<{ decision: Decision; reason: string }>>();

  constructor(policies: TemplatePolicies, place: Place) {
    this.policies = policies;
    this.place = place;
  }

  /**
   * The access key a principal signs with. Made up, one per role and session, so the
   * gateway can tell callers apart; nothing checks the secret (signatures are not
   * verified: the gateway models authorization, not authentication).
   */
  credentialsFor(roleArn: string, session: string): Credentials {
    if (!this.policies.identityPolicies(roleArn)) throw new Error(`the template declares no role ${roleArn}`);
    const principal = this.principal(roleArn, session);
    const digest = createHash("sha256").update(principal.arn).digest("hex").toUpperCase();
    // ASIA…: AWS's prefix for a session's temporary key, 20 characters in all.
    const accessKeyId = `ASIA${digest
      .replace(/[^A-Z2-7]/g, "")
      .padEnd(16, "Q")
      .slice(0, 16)}`;
    this.byKey.set(accessKeyId, principal);
    return { accessKeyId, secretAccessKey: `sim-secret-${digest.slice(0, 24)}` };
  }

  principal(roleArn: string, session: string): Principal {
    const name = roleArn.split("/").pop() ?? roleArn;
    return { roleArn, arn: `arn:aws:sts::${this.place.account}:assumed-role/${name}/${session}` };
  }

  principalOfKey(accessKeyId: string): Principal | undefined {
    return this.byKey.get(accessKeyId);
  }

  /** The role's identity policies, as the template declares them (or as last replaced). */
  identityPolicies(roleArn: string): NamedPolicy[] | undefined {
    return this.policies.identityPolicies(roleArn);
  }

  /**
   * Replaces the role's identity policies from now on: a test takes a statement away to
   * show that the flow which needs it fails. Decisions made before are forgotten.
   */
  setIdentityPolicies(roleArn: string, policies: NamedPolicy[]): void {
    this.policies.setIdentityPolicies(roleArn, policies);
    this.decided.clear();
  }

  /** Decides `request` for `principal` (undefined: an unsigned request), and records it. */
  async authorize(principal: Principal | undefined, request: IamRequest): Promise<IamCall> {
    const context = { ...this.globalKeys(principal, request.action), ...request.context };
    const key = JSON.stringify([principal?.roleArn ?? "", request.action, request.resource, context]);
    let decided = this.decided.get(key);
    if (!decided) {
      decided = this.evaluate(principal, { ...request, context });
      this.decided.set(key, decided);
    }
    const { decision, reason } = await decided;
    const who = principal?.arn ?? "anonymous";
    return this.record({
      principal: who,
      action: request.action,
      resource: request.resource,
      ...(request.context && Object.keys(request.context).length > 0 ? { context: request.context } : {}),
      decision,
      ...(decision === "Allowed"
        ? {}
        : {
            message: `User: ${who} is not authorized to perform: ${request.action} on resource: ${request.resource} ${reason}`,
          }),
    });
  }

  /** A call refused before IAM evaluates it (an access key AWS does not know). */
  refuse(principal: string, request: IamRequest, message: string): IamCall {
    return this.record({
      principal,
      action: request.action,
      resource: request.resource,
      decision: "ImplicitlyDenied",
      message,
    });
  }

  get denied(): IamCall[] {
    return this.calls.filter((c) => c.decision !== "Allowed");
  }

  private record(call: IamCall): IamCall {
    this.calls.push(call);
    return call;
  }

  /**
   * Global condition keys the sim can supply. Every call is taken as over TLS, as the
   * SDK makes it against AWS (the stand-ins speak plain HTTP on 127.0.0.1). Time, source
   * IP and VPC endpoint keys are not supplied: nothing here knows them truly.
   */
  private globalKeys(principal: Principal | undefined, action: string): Record<string, string> {
    const service = action.split(":")[0] ?? "";
    return {
      "aws:SecureTransport": "true",
      ...(["s3", "iam"].includes(service) ? {} : { "aws:RequestedRegion": this.place.region }),
      ...(principal
        ? {
            "aws:PrincipalArn": principal.roleArn,
            "aws:PrincipalAccount": this.place.account,
            "aws:PrincipalType": "AssumedRole",
          }
        : {}),
    };
  }

  private async evaluate(
    principal: Principal | undefined,
    request: Required<IamRequest>,
  ): Promise<{ decision: Decision; reason: string }> {
    const resourcePolicy = this.policies.resourcePolicy(request.resource);
    const out = await runSimulation(
      {
        request: {
          principal: principal?.arn ?? anonymousPrincipal,
          action: request.action,
          resource: { resource: request.resource, accountId: this.place.account },
          contextVariables: request.context,
        },
        identityPolicies: principal ? (this.policies.identityPolicies(principal.roleArn) ?? []) : [],
        serviceControlPolicies: [],
        resourceControlPolicies: [],
        ...(resourcePolicy ? { resourcePolicy } : {}),
      },
      {},
    );
    if (out.resultType === "error") {
      // A request the simulator cannot read (an action it does not know, a resource of the
      // wrong type) is refused: a mapping the sim got wrong must show, not pass.
      return {
        decision: "ImplicitlyDenied",
        reason: `because the sim could not evaluate it (${JSON.stringify(out.errors)})`,
      };
    }
    const decision = out.overallResult as Decision;
    if (decision === "Allowed") return { decision, reason: "" };
    if (decision === "ExplicitlyDenied") {
      const analysis = out.resultType === "single" ? out.result.analysis : undefined;
      const inResource = analysis?.resourceAnalysis?.result === "ExplicitlyDenied";
      return {
        decision,
        reason: `with an explicit deny in ${inResource ? "a resource-based" : "an identity-based"} policy`,
      };
    }
    return { decision, reason: `because no identity-based policy allows the ${request.action} action` };
  }
}
