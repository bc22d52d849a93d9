/**
 * The JSON schemas of the gateway's request bodies, compiled once with ajv, and the sentence each
 * failure becomes. Fastify runs them on every POST before a handler sees the body (see
 * gateway.ts's validator compiler); the handlers then only map the checked body to a request. The
 * rows themselves are validated once, by the client the gateway hands them to (validateTexts).
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { BadRequestError, type BertqError } from '@bertq/protocol';

type Describe = (error: ErrorObject, body: unknown) => BertqError;

/** `POST /encode` (bert-as-service): `{"id"?, "texts", "is_tokenized"?, "show_tokens"?}`. */
export const ENCODE_BODY = {
  $id: 'bertq-gateway-encode-body',
  type: 'object',
  required: ['texts'],
  additionalProperties: false,
  properties: {
    id: {},
    texts: {},
    is_tokenized: { type: ['boolean', 'null'] },
    show_tokens: { type: ['boolean', 'null'] },
  },
} as const;

/** `POST /v1/embeddings` (OpenAI). `input` is checked by the route: its rules are OpenAI's, not a type. */
export const EMBEDDINGS_BODY = {
  $id: 'bertq-gateway-embeddings-body',
  type: 'object',
  required: ['input'],
  additionalProperties: false,
  properties: {
    input: {},
    model: { type: ['string', 'null'] },
    encoding_format: { enum: ['float', 'base64', null] },
    dimensions: { type: ['integer', 'null'], minimum: 1 },
    user: { type: ['string', 'null'] },
  },
} as const;

/**
 * `POST /embed` (Text Embeddings Inference). Fields TEI has and bertq does not use
 * (`truncation_direction`, `prompt_name`) are accepted and ignored; `inputs` is checked by the route.
 */
export const TEI_EMBED_BODY = {
  $id: 'bertq-gateway-tei-embed-body',
  type: 'object',
  required: ['inputs'],
  properties: {
    inputs: {},
    truncate: { type: ['boolean', 'null'] },
    normalize: { type: ['boolean', 'null'] },
    truncation_direction: { enum: ['Left', 'Right', 'left', 'right', null] },
    prompt_name: { type: ['string', 'null'] },
  },
} as const;

function jsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value;
}

function field(error: ErrorObject): string {
  return error.instancePath.replace(/^\//, '');
}

function notAnObject(body: unknown): BadRequestError {
  return new BadRequestError(`request body must be a JSON object, got ${jsonType(body)}`);
}

const describeEncode: Describe = (error, body) => {
  if (error.instancePath === '' && error.keyword === 'type') return notAnObject(body);
  if (error.keyword === 'required') {
    return new BadRequestError('texts is missing: send {"texts": ["first sentence", "second sentence"]}');
  }
  if (error.keyword === 'additionalProperties') {
    const unknown = Object.keys(body as object).filter((k) => !Object.hasOwn(ENCODE_BODY.properties, k));
    return new BadRequestError(
      `unknown field${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k)).join(', ')} in the /encode body; it takes ${Object.keys(ENCODE_BODY.properties).join(', ')}`,
    );
  }
  return new BadRequestError(`${field(error)} must be true or false, got ${JSON.stringify(error.data)}`);
};

/** OpenAI's wording, with the offending `param` (their SDKs and docs show it). */
function openAI(message: string, param: string): BadRequestError {
  return new BadRequestError(message, { details: { param } });
}

const describeEmbeddings: Describe = (error, body) => {
  if (error.instancePath === '' && error.keyword === 'type') return notAnObject(body);
  if (error.keyword === 'required') return openAI("'input' is a required property", 'input');
  if (error.keyword === 'additionalProperties') {
    const key = String(error.params.additionalProperty);
    return openAI(`Unrecognized request argument supplied: ${key}`, key);
  }
  const name = field(error);
  const got = JSON.stringify(error.data);
  if (name === 'encoding_format') return openAI(`'encoding_format' must be "float" or "base64", got ${got}`, name);
  if (name === 'dimensions') return openAI(`'dimensions' must be a positive integer, got ${got}`, name);
  return openAI(`'${name}' must be a string, got ${jsonType(error.data)}`, name);
};

const describeTeiEmbed: Describe = (error, body) => {
  if (error.instancePath === '' && error.keyword === 'type') return notAnObject(body);
  if (error.keyword === 'required') return new BadRequestError('`inputs` is missing: send {"inputs": "some text"}');
  return new BadRequestError(`\`${field(error)}\` has the wrong type: got ${JSON.stringify(error.data)}`);
};

// verbose: errors carry the offending value ("got 3"); allErrors off: the first problem is reported.
const ajv = new Ajv({ allErrors: false, verbose: true, strict: true, allowUnionTypes: true });

/** The body, checked; or throws BadRequestError saying what is wrong. */
export type BodyValidator = (body: unknown) => Record<string, unknown>;

function compile(schema: object, describe: Describe): BodyValidator {
  const validate: ValidateFunction = ajv.compile(schema);
  return (body) => {
    if (validate(body)) return body as Record<string, unknown>;
    const error = validate.errors?.[0];
    throw error === undefined ? new BadRequestError('the request body is invalid') : describe(error, body);
  };
}

/** Validators by schema, for fastify's validator compiler and for tests. */
export const BODY_VALIDATORS = new Map<object, BodyValidator>([
  [ENCODE_BODY, compile(ENCODE_BODY, describeEncode)],
  [EMBEDDINGS_BODY, compile(EMBEDDINGS_BODY, describeEmbeddings)],
  [TEI_EMBED_BODY, compile(TEI_EMBED_BODY, describeTeiEmbed)],
]);

export const validateEncodeBody: BodyValidator = BODY_VALIDATORS.get(ENCODE_BODY)!;
export const validateEmbeddingsBody: BodyValidator = BODY_VALIDATORS.get(EMBEDDINGS_BODY)!;
