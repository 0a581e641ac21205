import { RemovalPolicy } from "aws-cdk-lib";
import * as dynamodb from "aws-cdk-lib/aws-dynamodb";
import * as iam from "aws-cdk-lib/aws-iam";
import { Construct } from "constructs";

export interface ControlTablesProps {
  /** Table name prefix. @default CloudFormation-generated names */
  readonly namePrefix?: string;
}

/**
 * The audit log (pk `org` or `db#<id>`, sk a zero-padded sequence; rows are only ever
 * put, see docs/architecture.md §4) and the catalog (pk `db#<id>`, sk `backup#<id>`,
 * rebuildable from the bucket). Both keep point-in-time recovery, refuse deletion, and
 * outlive the stack: losing the audit log would lose the proof.
 */
export class ControlTables extends Construct {
  readonly audit: dynamodb.TableV2;
  readonly catalog: dynamodb.TableV2;

  constructor(scope: Construct, id: string, props: ControlTablesProps = {}) {
    super(scope, id);
    const table = (name: string, resourcePolicy?: iam.PolicyDocument) =>
      new dynamodb.TableV2(this, name, {
        ...(resourcePolicy ? { resourcePolicy } : {}),
        ...(props.namePrefix ? { tableName: `${props.namePrefix}-${name.toLowerCase()}` } : {}),
        partitionKey: { name: "pk", type: dynamodb.AttributeType.STRING },
        sortKey: { name: "sk", type: dynamodb.AttributeType.STRING },
        billing: dynamodb.Billing.onDemand(),
        pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
        deletionProtection: true,
        removalPolicy: RemovalPolicy.RETAIN,
      });
    // The audit log is append-only by its own policy, not only by how our roles are
    // written: nobody (an administrator included, until the policy is changed, which
    // CloudTrail records) may update or delete a row, or batch-write over one. Rows are
    // put with attribute_not_exists(sk) by the functions that hold PutItem.
    this.audit = table(
      "Audit",
      new iam.PolicyDocument({
        statements: [
          new iam.PolicyStatement({
            sid: "AppendOnly",
            effect: iam.Effect.DENY,
            principals: [new iam.AnyPrincipal()],
            actions: [
              "dynamodb:UpdateItem",
              "dynamodb:DeleteItem",
              "dynamodb:BatchWriteItem",
              "dynamodb:PartiQLUpdate",
              "dynamodb:PartiQLDelete",
            ],
            resources: ["*"],
          }),
        ],
      }),
    );
    this.catalog = table("Catalog");
  }
}
