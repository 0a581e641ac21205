import { Stack, type StackProps } from "aws-cdk-lib";
import type { Construct } from "constructs";

/**
 * The strongroom deployment. It only composes constructs (bucket, tables, worker
 * cluster, state machines, schedules, alarms); they arrive with later issues.
 */
export class StrongroomStack extends Stack {
  constructor(scope: Construct, id: string, props: StackProps = {}) {
    super(scope, id, props);
  }
}
