/**
 * `1 backup`, `2 backups`: a number and its noun, as people write them, in every message
 * strongroom prints. Not `backup(s)`. The plural, where adding s will not do, is given.
 */
export const count = (n: number, noun: string, plural = `${noun}s`) => `${n} ${n === 1 ? noun : plural}`;
