import type { Context } from "aws-lambda";

// The Lambda runtime's context object cannot run here; this is its shape, nothing more.
export const lambdaContext = {
  functionName: "test",
  functionVersion: "$LATEST",
  invokedFunctionArn: "arn:aws:lambda:us-east-1:000000000000:function:test",
  memoryLimitInMB: "256",
  awsRequestId: "req-1",
  logGroupName: "/aws/lambda/test",
  logStreamName: "s",
  callbackWaitsForEmptyEventLoop: true,
  getRemainingTimeInMillis: () => 30_000,
} as unknown as Context;
