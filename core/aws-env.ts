/** Static credentials, in the shape every SDK v3 client takes. */
export interface StaticCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/**
 * What an SDK client takes from an environment that is not the process's own. Given
 * `process.env`, these return nothing, and the SDK reads the process's environment
 * itself, as it does in Lambda and ECS (its default credential chain: the environment's
 * keys, then the container or instance role). Given another environment (npm run sim
 * gives each in-process function its template environment, its role's access key and
 * the IAM gateway's endpoints), the client reads that one only, so two functions in one
 * process call AWS as two principals.
 */
export function credentialsFromEnv(env: NodeJS.ProcessEnv): { credentials?: StaticCredentials } {
  if (env === process.env || !env.AWS_ACCESS_KEY_ID || !env.AWS_SECRET_ACCESS_KEY) return {};
  return {
    credentials: {
      accessKeyId: env.AWS_ACCESS_KEY_ID,
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
      ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}),
    },
  };
}

/**
 * Region, endpoint (`AWS_ENDPOINT_URL_<SERVICE>`, then `AWS_ENDPOINT_URL`, as the SDK
 * reads them) and credentials for a client of `service`, from `env` (see credentialsFromEnv).
 */
export function clientConfigFromEnv(
  env: NodeJS.ProcessEnv,
  service: "DYNAMODB" | "SSM" | "SNS" | "SECRETS_MANAGER",
): { region?: string; endpoint?: string; credentials?: StaticCredentials } {
  if (env === process.env) return {};
  const region = env.AWS_REGION ?? env.AWS_DEFAULT_REGION;
  const endpoint = env[`AWS_ENDPOINT_URL_${service}`] ?? env.AWS_ENDPOINT_URL;
  return { ...(region ? { region } : {}), ...(endpoint ? { endpoint } : {}), ...credentialsFromEnv(env) };
}
