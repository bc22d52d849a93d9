/**
 * The JSON Schemas of wire protocol v1. The files in `packages/protocol/schemas/` are the one source of
 * truth: they are published for other languages, and scripts/gen-schemas.mjs bundles them (and their
 * TypeScript types) into src/generated/, so this package does no I/O. Compiled once at module load
 * (never per message).
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { InternalError } from './errors.js';
import { errorSchema, jobSchema, serverConfigSchema, serverStatusSchema } from './generated/schemas.js';

export const SCHEMA_FILES = {
  job: 'job.v1.json',
  error: 'error.v1.json',
  serverConfig: 'server-config.v1.json',
  serverStatus: 'server-status.v1.json',
} as const;

export type SchemaName = keyof typeof SCHEMA_FILES;

/** The schema documents, bundled at build time (src/generated/schemas.ts): no file is read at run time. */
export const SCHEMAS: { readonly [K in SchemaName]: Readonly<Record<string, unknown> & { $id: string }> } = {
  job: jobSchema as unknown as Record<string, unknown> & { $id: string },
  error: errorSchema as unknown as Record<string, unknown> & { $id: string },
  serverConfig: serverConfigSchema as unknown as Record<string, unknown> & { $id: string },
  serverStatus: serverStatusSchema as unknown as Record<string, unknown> & { $id: string },
};

// verbose: errors carry the offending value, so messages can say "got number". allErrors stays off:
// the first problem is the one reported, and validation stops there.
const ajv = new Ajv({ allErrors: false, verbose: true, strict: true, allowUnionTypes: true });
for (const schema of Object.values(SCHEMAS)) ajv.addSchema(schema);

function compiled(name: SchemaName): ValidateFunction {
  const fn = ajv.getSchema(SCHEMAS[name].$id);
  if (fn === undefined) throw new InternalError(`@bertq/protocol schema ${SCHEMA_FILES[name]} did not compile`);
  return fn;
}

/** Compiled validators, one per schema, built once. */
export const VALIDATORS: { readonly [K in SchemaName]: ValidateFunction } = {
  job: compiled('job'),
  error: compiled('error'),
  serverConfig: compiled('serverConfig'),
  serverStatus: compiled('serverStatus'),
};

/** The `$id` each compiled validator was built from (to check they are the schema files). */
export function compiledSchemaId(name: SchemaName): string | undefined {
  const schema = VALIDATORS[name].schema;
  return typeof schema === 'object' && schema !== null ? (schema as { $id?: string }).$id : undefined;
}

/** JSON-pointer `/texts/3/1` as the path a person reads: `texts[3][1]`; `root` for the document itself. */
export function readablePath(instancePath: string, root: string): string {
  if (instancePath === '') return root;
  let out = '';
  for (const raw of instancePath.split('/').slice(1)) {
    const token = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    out += /^\d+$/.test(token) ? `[${token}]` : out === '' ? token : `.${token}`;
  }
  return out;
}

/** The JSON type name of a value as a message says it: `null`, `array`, `number`, … */
export function jsonTypeOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

/** The first error worth reporting: the if/then/else wrapper errors only repeat an inner one. */
export function firstSchemaError(errors: readonly ErrorObject[] | null | undefined): ErrorObject | undefined {
  if (!errors) return undefined;
  return errors.find((e) => e.keyword !== 'if') ?? errors[0];
}

/** A generic readable message for one ajv error (used for config/status/error documents). */
export function describeSchemaError(error: ErrorObject, root: string): string {
  const where = readablePath(error.instancePath, root);
  switch (error.keyword) {
    case 'required':
      return `${where} has no "${String(error.params.missingProperty)}" field`;
    case 'additionalProperties':
      return `${where} has an unknown field "${String(error.params.additionalProperty)}"`;
    case 'type':
      return `${where} must be ${String(error.params.type)}, got ${jsonTypeOf(error.data)}`;
    case 'enum':
      return `${where} must be one of ${(error.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}, got ${JSON.stringify(error.data)}`;
    case 'const':
      return `${where} must be ${JSON.stringify(error.params.allowedValue)}, got ${JSON.stringify(error.data)}`;
    default:
      return `${where} ${error.message ?? 'is invalid'}`;
  }
}
