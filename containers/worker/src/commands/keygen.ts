import { type Command, Option } from "commander";
import type { CliContext } from "./context.ts";
import { flagOption, jsonOption } from "./options.ts";

export function keygenCommand(parent: Command, ctx: CliContext): void {
  parent
    .command("keygen")
    .description(
      "generate an age X25519 identity (private, mode 0600) and print its recipient (public); with --signing, a signing key for audit rows and its signer",
    )
    .addOption(
      new Option(
        "--out <file>",
        "where to write the key (default: strongroom-identity.txt, or strongroom-signing.key)",
      ).env("STRONGROOM_KEY_OUT"),
    )
    .addOption(
      flagOption(
        "--signing",
        "generate an Ed25519 signing key instead: the host that backs up signs the store's audit rows with it (--signing-key), readers trust its signer (--signer)",
        "STRONGROOM_KEYGEN_SIGNING",
      ),
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
      "\nExamples:\n  $ strongroom keygen --out ~/.strongroom/identity.txt\n  age1…   (pass this to `backup --recipient`; keep the file offline)\n  $ strongroom keygen --signing --out /etc/strongroom/signing.key\n  srsigner1…   (backup/verify/prune --signing-key the file; everyone else --signer this)",
    )
    .action(async (o: { out?: string; force?: boolean; signing?: boolean; json?: boolean }) => {
      const { writeIdentityFile } = await import("../identity-file.ts");
      const now = new Date();
      if (o.signing) {
        const { generateSigningKey } = await import("#core/audit/row-signature.ts");
        const key = generateSigningKey();
        const written = await writeIdentityFile(
          o.out ?? "strongroom-signing.key",
          `# strongroom signing key, created: ${now.toISOString()}\n# signer: ${key.signer}\n# keep it secret: whoever holds it can make backups count in a store's own log\n${key.secret}\n`,
          { force: o.force === true, now },
        );
        const doc = { signer: key.signer, signingKeyFile: written.file };
        ctx.stdout(o.json ? `${JSON.stringify(doc)}\n` : `${key.signer}\n`);
        return;
      }
      const { generateX25519Identity, identityToRecipient } = await import("age-encryption");
      const identity = await generateX25519Identity();
      const recipient = await identityToRecipient(identity);
      const written = await writeIdentityFile(
        o.out ?? process.env.STRONGROOM_IDENTITY_FILE ?? "strongroom-identity.txt",
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
