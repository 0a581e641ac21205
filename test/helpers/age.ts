import { generateX25519Identity, identityToRecipient } from "age-encryption";

export interface KeyPair {
  identity: string;
  recipient: string;
}

export async function keyPair(): Promise<KeyPair> {
  const identity = await generateX25519Identity();
  return { identity, recipient: await identityToRecipient(identity) };
}
