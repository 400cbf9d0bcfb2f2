/**
 * A small checker of a JSON value against the schemas of an OpenAPI 3.1 document: the subset the read
 * API's document uses ($ref to components, type or a list of types, properties, required,
 * additionalProperties, items, enum, minimum, minLength, maxLength, oneOf, format date-time). A keyword
 * it does not know fails loudly, so the document cannot outgrow the check unnoticed.
 */
type Schema = Record<string, unknown>;

const KNOWN = new Set([
  '$ref',
  'type',
  'properties',
  'required',
  'additionalProperties',
  'items',
  'enum',
  'minimum',
  'minLength',
  'maxLength',
  'oneOf',
  'format',
  'description',
]);

function typeOf(v: unknown): string[] {
  if (v === null) return ['null'];
  if (Array.isArray(v)) return ['array'];
  if (typeof v === 'number') return Number.isInteger(v) ? ['integer', 'number'] : ['number'];
  return [typeof v];
}

/** The violations of `value` against `schema` (empty: valid), each naming where. */
export function check(doc: Schema, schema: Schema, value: unknown, where = '$'): string[] {
  for (const k of Object.keys(schema)) if (!KNOWN.has(k)) throw new Error(`unknown keyword ${k} at ${where}`);
  if (typeof schema.$ref === 'string') {
    const name = schema.$ref.replace('#/components/schemas/', '');
    const target = (doc.components as { schemas: Record<string, Schema> }).schemas[name];
    if (!target) return [`${where}: no schema ${schema.$ref}`];
    return check(doc, target, value, where);
  }
  if (Array.isArray(schema.oneOf)) {
    const passing = (schema.oneOf as Schema[]).filter((s) => check(doc, s, value, where).length === 0);
    return passing.length === 1 ? [] : [`${where}: matches ${passing.length} of oneOf`];
  }
  const out: string[] = [];
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? (schema.type as string[]) : [schema.type as string];
    if (!typeOf(value).some((t) => types.includes(t))) {
      return [`${where}: ${JSON.stringify(value)} is not ${types.join('|')}`];
    }
  }
  if (Array.isArray(schema.enum) && !schema.enum.includes(value)) out.push(`${where}: not in enum`);
  if (typeof value === 'number' && typeof schema.minimum === 'number' && value < schema.minimum)
    out.push(`${where}: below ${schema.minimum}`);
  if (typeof value === 'string') {
    if (typeof schema.minLength === 'number' && value.length < schema.minLength)
      out.push(`${where}: too short`);
    if (typeof schema.maxLength === 'number' && value.length > schema.maxLength)
      out.push(`${where}: too long`);
    if (schema.format === 'date-time' && !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/.test(value))
      out.push(`${where}: not a date-time`);
  }
  if (Array.isArray(value) && schema.items) {
    value.forEach((v, i) => out.push(...check(doc, schema.items as Schema, v, `${where}[${i}]`)));
  }
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const obj = value as Record<string, unknown>;
    const props = (schema.properties ?? {}) as Record<string, Schema>;
    for (const r of (schema.required ?? []) as string[]) if (!(r in obj)) out.push(`${where}: missing ${r}`);
    for (const [k, v] of Object.entries(obj)) {
      if (props[k]) out.push(...check(doc, props[k], v, `${where}.${k}`));
      else if (schema.additionalProperties === false) out.push(`${where}: unexpected property ${k}`);
    }
  }
  return out;
}

/** The schema of the JSON answer of `status` to GET `path` (a concrete path, matched to a template). */
export function responseSchema(doc: Schema, path: string, status: number): Schema {
  const paths = doc.paths as Record<string, { get: { responses: Record<string, Schema> } }>;
  const template = Object.keys(paths).find((t) =>
    new RegExp(`^${t.replace(/\{[^}]+\}/g, '[^/]+').replace(/\./g, '\\.')}$`).test(path),
  );
  if (!template) throw new Error(`the document has no path for ${path}`);
  const response = paths[template]!.get.responses[String(status)] as
    { content: { 'application/json': { schema: Schema } } } | undefined;
  if (!response) throw new Error(`the document has no ${status} answer for ${template}`);
  return response.content['application/json'].schema;
}
