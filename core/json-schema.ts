/**
 * Helpers for schemas typed `JSONSchemaType<T>`, so that ajv's typings hold a schema and
 * the type it checks together: the compiler fails when they disagree (`npm run
 * typecheck`, part of `npm test`), and `ajv.compile(schema)` narrows to T.
 */

/**
 * The schema of a property that T marks optional. Ajv's typings ask `nullable: true` of
 * every such property (ajv-validator/ajv#1664), but at run time `nullable: true` admits
 * null, and none of our schemas does. So the flag is in the type only: ajv compiles
 * `schema` exactly as written. The compiler still holds optional in the schema to
 * optional in T, both ways: a required property's schema may not carry the flag.
 */
export function optional<const S extends object>(schema: S): S & { nullable: true } {
  return schema as S & { nullable: true };
}
