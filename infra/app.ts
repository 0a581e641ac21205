#!/usr/bin/env node
import { App } from "aws-cdk-lib";
import { StrongroomStack } from "./stacks/strongroom-stack.ts";

/** Composes the stacks; no logic here (see infra/stacks and infra/constructs). */
export function buildApp(app = new App()): App {
  new StrongroomStack(app, "Strongroom", {
    description: "strongroom: PostgreSQL backups you own and can prove",
  });
  return app;
}

if (import.meta.url === `file://${process.argv[1]}`) buildApp().synth();
