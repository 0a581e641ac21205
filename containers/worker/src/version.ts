import pkg from "#package.json" with { type: "json" };

/** The package version, recorded in every manifest. */
export const WORKER_VERSION: string = pkg.version;
