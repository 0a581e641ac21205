/**
 * "Did you mean …?": the known name nearest to one that was mistyped (an option, a
 * database id, an audit scope), when it is near enough to be a likely typo.
 */

/** Levenshtein distance, with a swap of two neighbours counted as one edit. */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) (d[0] as number[])[j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const row = d[i] as number[];
      const prev = d[i - 1] as number[];
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row[j] = Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        row[j] = Math.min(row[j] as number, ((d[i - 2] as number[])[j - 2] as number) + 1);
      }
    }
  }
  return (d[a.length] as number[])[b.length] as number;
}

/**
 * The candidate nearest to `word` (ties: the first in sort order), or undefined when
 * none is within about two edits in five: a far-off suggestion misleads more than none.
 */
export function nearestName(word: string, candidates: Iterable<string>): string | undefined {
  const nearest = [...candidates]
    .filter((c) => c !== word)
    .map((c) => ({ c, d: editDistance(word, c) }))
    .sort((a, b) => a.d - b.d || (a.c < b.c ? -1 : 1))[0];
  return nearest !== undefined && nearest.d <= Math.max(1, Math.floor(word.length * 0.4)) ? nearest.c : undefined;
}
