import { InvalidRecipientError } from "./errors.ts";

/**
 * A rejected recipient, described without echoing it: what was passed may be a secret
 * (an identity pasted in the wrong place, a password), and errors reach terminals, CI
 * logs and journald. Only its first five characters and its length are shown.
 */
export function rejectedRecipient(recipient: string): string {
  return `${JSON.stringify(`${recipient.slice(0, 5)}…`)} (${recipient.length} characters)`;
}

/** Accepts only X25519 recipients (`age1…`), the ones strongroom supports. */
export function assertX25519Recipient(recipient: string): void {
  if (/^AGE-SECRET-KEY-1/i.test(recipient.trim())) {
    throw new InvalidRecipientError("a recipient is a private identity (AGE-SECRET-KEY-1…), not a public key", {
      hint: "pass its public key, age1…, which `strongroom keygen` printed (and wrote in the identity file's `# public key:` line); keep the identity itself off the command line",
    });
  }
  if (!/^age1[02-9ac-hj-np-z]{58}$/.test(recipient)) {
    throw new InvalidRecipientError(`invalid recipient ${rejectedRecipient(recipient)}`, {
      hint: "pass an X25519 age public key (age1…, 62 characters), e.g. from `strongroom keygen`",
    });
  }
}
