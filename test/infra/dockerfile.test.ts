import { describe, expect, it } from "vitest";
import { ImageConfigError } from "#core/errors.ts";
import { DOCKER_DEFAULT_PATH, parseDockerfile, readImageConfig } from "../../infra/sim/dockerfile.ts";

/** The sim's task sandbox applies an image's USER, ENV and VOLUME as Docker would read them. */
describe("reading a Dockerfile as Docker builds it", () => {
  it("the worker's image runs as node, with its staging and scratch settings, and declares /tmp a volume", () => {
    expect(readImageConfig()).toEqual({
      user: "node",
      env: {
        PATH: DOCKER_DEFAULT_PATH,
        NODE_ENV: "production",
        STRONGROOM_STAGING_DIR: "/tmp",
        STRONGROOM_SCRATCH_DIR: "/tmp",
      },
      volumes: ["/tmp"],
    });
  });

  it.for([
    ['VOLUME ["/tmp", "/data/"]', ["/tmp", "/data"]],
    ["VOLUME /tmp /data", ["/tmp", "/data"]],
    ['VOLUME /tmp\nVOLUME [ "/tmp" ]', ["/tmp"]],
    // biome-ignore lint/suspicious/noTemplateCurlyInString: Dockerfile syntax, not a template
    ["ENV D=/data\nVOLUME $D ${D}2", ["/data", "/data2"]],
    ["volume /var//lib/../tmp", ["/var/tmp"]],
  ] as const)("VOLUME in JSON and plain form: %s", ([line, volumes]) => {
    expect(parseDockerfile(`FROM debian\n${line}\n`).volumes).toEqual(volumes);
  });

  it("ENV in both forms, quoted, continued over lines, substituting earlier ENV and ARG but not in single quotes", () => {
    const { env } = parseDockerfile(
      [
        "FROM debian",
        "ARG SUFFIX=x",
        'ENV A=1 B="two words" \\',
        "# a comment line inside a continuation",
        // biome-ignore lint/suspicious/noTemplateCurlyInString: Dockerfile syntax, not a template
        "    C='$A' D=\"$A-${B}\" E=$SUFFIX",
        "ENV LEGACY a value with spaces",
        "ENV PATH=/opt/bin:$PATH",
      ].join("\n"),
    );
    expect(env).toEqual({
      PATH: `/opt/bin:${DOCKER_DEFAULT_PATH}`,
      A: "1",
      B: "two words",
      C: "$A",
      D: "1-two words",
      E: "x",
      LEGACY: "a value with spaces",
    });
  });

  it("only the final stage counts, and a stage FROM an earlier one starts from its settings", () => {
    const text = [
      "FROM node:22 AS build",
      "ENV BUILD_ONLY=1",
      "USER builder",
      "VOLUME /cache",
      "FROM debian",
      "ENV RUNTIME=1",
      "FROM build AS final",
      "ENV FINAL=1",
    ].join("\n");
    expect(parseDockerfile(text)).toEqual({
      user: "builder",
      env: { PATH: DOCKER_DEFAULT_PATH, BUILD_ONLY: "1", FINAL: "1" },
      volumes: ["/cache"],
    });
    // No USER: Docker runs the image as root.
    expect(parseDockerfile("FROM node:22 AS build\nUSER node\nFROM debian\n").user).toBeUndefined();
  });

  it.for([
    ["ENV A=1", /comes before the first FROM/],
    ['FROM debian\nVOLUME ["/tmp"', /is not a JSON array of strings/],
    ["FROM debian\nVOLUME relative", /is not absolute/],
    ['FROM debian\nENV A="open', /has an unclosed "/],
    ["FROM debian\nUSER a b", /needs one user/],
    ["# nothing", /has no FROM/],
  ] as const)("refuses what it cannot read as Docker would, naming the line: %s", ([text, message]) => {
    expect(() => parseDockerfile(text)).toThrow(ImageConfigError);
    expect(() => parseDockerfile(text)).toThrow(message);
  });
});
