import { type Command, Option } from "commander";
import type { CliContext } from "./context.ts";
import { flagOption, jsonOption } from "./options.ts";

export function keygenCommand(parent: Command, ctx: CliContext): void {
  parent
    .command("keygen")
    .description("generate an age X25519 identity (private, mode 0600) and print its recipient (public)")
    .addOption(
      new Option("--out <file>", "where to write the identity")
        .default("strongroom-identity.txt")
        .env("STRONGROOM_IDENTITY_FILE"),
    )
    .addOption(
      flagOption(
        "--force",
        "replace an existing identity file (the old one is kept beside it as <file>.bak-<time>)",
        "STRONGROOM_FORCE",
      ),
    )
    .addOption(jsonOption())
    .addHelpText(
      "after",
      "\nExamples:\n  $ strongroom keygen --out ~/.strongroom/identity.txt\n  age1…   (pass this to `backup --recipient`; keep the file offline)",
    )
    .action(async (o: { out: string; force?: boolean; json?: boolean }) => {
      const { generateX25519Identity, identityToRecipient } = await import("age-encryption");
      const { writeIdentityFile } = await import("../identity-file.ts");
      const identity = await generateX25519Identity();
      const recipient = await identityToRecipient(identity);
      const now = new Date();
      const written = await writeIdentityFile(
        o.out,
        `# created: ${now.toISOString()}\n# public key: ${recipient}\n${identity}\n`,
        { force: o.force === true, now },
      );
      if (written.previous) {
        ctx.log().warn("the previous identity was kept; backups encrypted to it still need it", {
          previous: written.previous,
        });
      }
      const doc = {
        recipient,
        identityFile: written.file,
        ...(written.previous ? { previousIdentityFile: written.previous } : {}),
      };
      ctx.stdout(o.json ? `${JSON.stringify(doc)}\n` : `${recipient}\n`);
    });
}
