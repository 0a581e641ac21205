import fc from "fast-check";

/**
 * Mutations of well-formed documents: each one changes one place (a value replaced by
 * any JSON value, a key removed, a key added), anywhere in the tree. Random input
 * alone rarely gets past a parser's first check; a mutated valid document reaches the
 * checks behind it.
 */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Every path (keys and indexes) into `doc`, the root included. */
function paths(doc: Json, prefix: Array<string | number> = []): Array<Array<string | number>> {
  const out = [prefix];
  if (Array.isArray(doc)) for (const [i, v] of doc.entries()) out.push(...paths(v, [...prefix, i]));
  else if (doc !== null && typeof doc === "object")
    for (const [k, v] of Object.entries(doc)) out.push(...paths(v, [...prefix, k]));
  return out;
}

function mutateAt(doc: Json, path: Array<string | number>, change: (parent: Json, key: string | number) => void): Json {
  const copy = structuredClone(doc);
  if (path.length === 0) return copy;
  let parent: Json = copy;
  for (const step of path.slice(0, -1)) parent = (parent as Record<string | number, Json>)[step] as Json;
  change(parent, path.at(-1) as string | number);
  return copy;
}

/** One mutation of `doc`: replace a value, delete a key or element, or add a key. */
export function mutated(doc: Json): fc.Arbitrary<Json> {
  const all = paths(doc);
  const nested = all.filter((p) => p.length > 0);
  const arms: Array<fc.Arbitrary<Json>> = [
    fc.tuple(fc.constantFrom(...all), fc.jsonValue()).map(([path, value]) =>
      path.length === 0
        ? (value as Json)
        : mutateAt(doc, path, (parent, key) => {
            (parent as Record<string | number, Json>)[key] = value as Json;
          }),
    ),
  ];
  if (nested.length > 0) {
    arms.push(
      fc.constantFrom(...nested).map((path) =>
        mutateAt(doc, path, (parent, key) => {
          if (Array.isArray(parent)) parent.splice(key as number, 1);
          else delete (parent as Record<string, Json>)[key as string];
        }),
      ),
    );
  }
  arms.push(
    fc.tuple(fc.constantFrom(...all), fc.string(), fc.jsonValue()).map(([path, key, value]) => {
      const copy = structuredClone(doc);
      let target: Json = copy;
      for (const step of path) target = (target as Record<string | number, Json>)[step] as Json;
      if (target !== null && typeof target === "object" && !Array.isArray(target)) target[key] = value as Json;
      return copy;
    }),
  );
  return fc.oneof(...arms);
}
