import { inject } from "vitest";

// Test workers see the rig's endpoints through the standard variables, like production code.
process.env.AWS_ACCESS_KEY_ID ??= "test";
process.env.AWS_SECRET_ACCESS_KEY ??= "test";
process.env.AWS_REGION ??= "us-east-1";
process.env.AWS_ENDPOINT_URL_S3 = inject("s3Endpoint");
process.env.AWS_ENDPOINT_URL_DYNAMODB = inject("dynamodbEndpoint");
// The Lambdas' logger prints one JSON line per handled failure; the handler tests assert on
// the errors themselves, and core/log.test.ts on what the logger prints.
process.env.POWERTOOLS_LOG_LEVEL ??= "SILENT";
