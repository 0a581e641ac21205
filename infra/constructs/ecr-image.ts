/**
 * An image in a private Amazon ECR repository, by its full URI:
 * `ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY:TAG` or `…/REPOSITORY@sha256:DIGEST`.
 * Only such an image can be pulled by a role granted exactly its repository; a task
 * pulling from another registry would need credentials of its own, or the internet
 * (the tasks may have neither: docs/network.md).
 */
export interface EcrImageUri {
  account: string;
  region: string;
  /** `aws`, `aws-cn` or `aws-us-gov`, as the registry's domain and region say. */
  partition: string;
  repository: string;
  /** `:TAG` or `@sha256:DIGEST`, as written. */
  reference: string;
  repositoryArn: string;
}

/** What a task's execution role needs to pull an image from a repository (and GetAuthorizationToken, on `*`). */
export const ECR_PULL_ACTIONS = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"];

const REGISTRY = /^(\d{12})\.dkr\.ecr(?:-fips)?\.([a-z]{2}(?:-[a-z]+)+-\d+)\.amazonaws\.com(\.cn)?$/;
/** ECR's repository names: lower-case path segments of letters and digits, separated by `.`, `_` or `-`. */
const REPOSITORY = /^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*\/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const FORM = "ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY@sha256:DIGEST (or :TAG)";

/** The parts of an ECR image URI; throws an Error whose message says what is wrong with it. */
export function parseEcrImageUri(uri: string): EcrImageUri {
  const slash = uri.indexOf("/");
  const registry = REGISTRY.exec(slash < 0 ? uri : uri.slice(0, slash));
  if (!registry || slash < 0) {
    throw new Error(
      `${JSON.stringify(uri)} is not an image in a private Amazon ECR registry; push it to an ECR repository and name it as ${FORM}`,
    );
  }
  const [, account, region, cn] = registry as unknown as [string, string, string, string | undefined];
  if ((cn !== undefined) !== region.startsWith("cn-")) {
    throw new Error(`${JSON.stringify(uri)}: region ${region} is not served at amazonaws.com${cn ?? ""}`);
  }
  const rest = uri.slice(slash + 1);
  const at = rest.indexOf("@");
  const colon = rest.lastIndexOf(":");
  const split = at >= 0 ? at : colon;
  if (split < 0) throw new Error(`${JSON.stringify(uri)} names no tag or digest; write ${FORM}`);
  const repository = rest.slice(0, split);
  const reference = rest.slice(split);
  if (at >= 0 && repository.includes(":")) {
    throw new Error(`${JSON.stringify(uri)} names both a tag and a digest; keep the digest`);
  }
  if (repository.length < 2 || repository.length > 256 || !REPOSITORY.test(repository)) {
    throw new Error(
      `${JSON.stringify(repository)} is not an ECR repository name (lower-case letters, digits, . _ - and /)`,
    );
  }
  if (at >= 0 ? !DIGEST.test(reference.slice(1)) : !TAG.test(reference.slice(1))) {
    throw new Error(
      `${JSON.stringify(reference)} is not ${at >= 0 ? "a digest (@sha256: and 64 hex digits)" : "a tag (up to 128 letters, digits, . _ and -)"}`,
    );
  }
  const partition = cn !== undefined ? "aws-cn" : region.startsWith("us-gov-") ? "aws-us-gov" : "aws";
  return {
    account,
    region,
    partition,
    repository,
    reference,
    repositoryArn: `arn:${partition}:ecr:${region}:${account}:repository/${repository}`,
  };
}

/** What is wrong with `uri` as an ECR image URI, or undefined. */
export function ecrImageProblem(uri: string): string | undefined {
  try {
    parseEcrImageUri(uri);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}
