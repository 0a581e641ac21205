import { CfnParameter, CfnRule, Fn } from "aws-cdk-lib";
import { Construct } from "constructs";

export interface UndeployableProps {
  /**
   * Why the stack may not be deployed, and what to do instead: CloudFormation shows it as
   * the reason it refuses the stack.
   */
  reason: string;
}

/**
 * Makes the stack's template one CloudFormation refuses to create or update, while it
 * still synthesizes and can be read. A CDK app cannot tell `cdk synth` from `cdk deploy`
 * (the CLI runs it the same way for both, aws/aws-cdk#9619), so the refusal travels in
 * the template: whoever deploys it, however (cdk deploy, a pipeline, the console), gets
 * `reason` before any resource is made.
 *
 * It is a template rule, as CDK's own CheckBootstrapVersion is. The rule asserts that its
 * parameter differs from the one value the parameter allows, which no deploy can pass.
 */
export class Undeployable extends Construct {
  static readonly PARAMETER_VALUE = "undeployable";

  constructor(scope: Construct, id: string, props: UndeployableProps) {
    super(scope, id);
    const marker = new CfnParameter(this, "Marker", {
      type: "String",
      default: Undeployable.PARAMETER_VALUE,
      allowedValues: [Undeployable.PARAMETER_VALUE],
      description: props.reason,
    });
    new CfnRule(this, "Refuse", {
      assertions: [
        {
          assert: Fn.conditionNot(Fn.conditionEquals(marker.valueAsString, Undeployable.PARAMETER_VALUE)),
          assertDescription: props.reason,
        },
      ],
    });
  }
}
