/**
 * The body of `POST /api/v1/policy/artifact`, as `petrel deploy` sends it: the artifact as
 * texts, its test blocks (IR), an Ed25519 signature over both, and display fields. Checked
 * against a JSON Schema (ajv) before anything else looks at it; a bad field is named.
 */
import { Ajv } from 'ajv';
import type { ArtifactManifest } from '../abi.ts';
import { describeSchemaError } from '../intake/index.ts';
import type { ArtifactTexts } from './loader.ts';

/** The request body, as published in `deployRequestSchema`. */
export interface DeployRequest {
  artifact: ArtifactTexts;
  /** Opaque to the runtime once it matches `testSchema`: the injected compiler runs them (policy-compiler.ts). */
  tests: unknown[];
  /** Base64 Ed25519 signature (artifact-signature.ts) of the artifact and `tests`. */
  signature: string;
  author?: string;
  subject?: string;
  commit?: string;
}

/** The largest body `petrel run` reads for an upload. */
export const MAX_DEPLOY_BYTES = 64 * 1024 * 1024;

const line = (max: number) => ({ type: 'string', maxLength: max, pattern: '^[^\\u0000-\\u001f\\u007f]*$' }) as const;
const loc = { type: 'object', additionalProperties: false, required: ['file', 'line', 'column'], properties: { file: line(4096), line: { type: 'integer', minimum: 1 }, column: { type: 'integer', minimum: 1 } } } as const;
const seconds = { type: ['number', 'null'], minimum: 0 } as const;
const step = (kind: string, required: string[], properties: Record<string, unknown>) => ({ type: 'object', additionalProperties: false, required: ['kind', 'loc', ...required], properties: { kind: { const: kind }, loc, ...properties } });
const expectation = (what: string, required: string[], properties: Record<string, unknown>) => ({ type: 'object', additionalProperties: false, required: ['what', ...required], properties: { what: { const: what }, ...properties } });
const name = line(256);

/** One expectation of an `expect` step, by `what` (compiler/ir.ts `IRExpectation`). */
const expectationSchema = {
  type: 'object',
  required: ['what'],
  discriminator: { propertyName: 'what' },
  oneOf: [
    expectation('route', ['route'], { route: name }),
    expectation('category', ['category'], { category: name }),
    expectation('disposition', ['disposition'], { disposition: { enum: ['hard', 'soft', 'throttle', 'block'] } }),
    expectation('bounce', ['category'], { category: name }),
    expectation('backoff', ['seconds', 'none'], { seconds, none: { type: 'boolean' } }),
    expectation('suspend', ['target', 'seconds', 'none'], { target: { enum: ['destination', 'source', 'tenant', null] }, seconds, none: { type: 'boolean' } }),
    expectation('disable-source', ['none'], { none: { type: 'boolean' } }),
    expectation('skip-mx', ['none'], { none: { type: 'boolean' } }),
    expectation('reroute', ['pool'], { pool: name }),
    expectation('retry', ['seconds', 'never'], { seconds, never: { type: 'boolean' } }),
    expectation('warmup', ['ramp', 'day', 'limit'], { ramp: name, day: { type: 'integer', minimum: 0 }, limit: { anyOf: [{ type: 'integer', minimum: 0 }, { const: 'unlimited' }] } }),
    expectation('setting', ['key', 'value'], { key: name, value: {} }),
  ],
} as const;

/** One `test` block (compiler/ir.ts `IRTest`), every step by `kind`. */
const testSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'loc', 'steps'],
  properties: {
    name: line(1024),
    loc,
    steps: {
      type: 'array',
      maxItems: 1000,
      items: {
        type: 'object',
        required: ['kind'],
        discriminator: { propertyName: 'kind' },
        oneOf: [
          step('deliver', ['to', 'mx', 'source', 'tenant'], { to: line(320), mx: { type: 'array', maxItems: 100, items: line(255) }, source: { anyOf: [name, { type: 'null' }] }, tenant: { anyOf: [name, { type: 'null' }] } }),
          step('reply', ['text', 'times', 'phase'], { text: { type: 'string', maxLength: 4096 }, times: { type: 'integer', minimum: 1, maximum: 10_000 }, phase: { enum: ['connect', 'ehlo', 'mail', 'rcpt', 'data', null] } }),
          step('wait', ['seconds'], { seconds: { type: 'number', minimum: 0 } }),
          step('expect', ['expectation'], { expectation: expectationSchema }),
        ],
      },
    },
  },
} as const;

export const deployRequestSchema = {
  $id: 'https://petrel.dev/schemas/deploy-1.json',
  type: 'object',
  additionalProperties: false,
  required: ['artifact', 'tests', 'signature'],
  properties: {
    artifact: {
      type: 'object',
      additionalProperties: false,
      required: ['module', 'moduleFile', 'sourceMap', 'manifest'],
      properties: {
        module: { type: 'string', minLength: 1 },
        moduleFile: { type: 'string', maxLength: 255, pattern: '^[\\w.-]+\\.mjs$' },
        sourceMap: { type: 'string' },
        // The loader checks the rest (ABI, module name); the signature covers all of it.
        manifest: {
          type: 'object',
          required: ['name', 'version', 'hash', 'abi', 'module'],
          properties: { name, version: name, hash: { type: 'string', pattern: '^[0-9a-f]{16,128}$' }, abi: { type: 'integer' }, module: { type: 'string', maxLength: 255, pattern: '^[\\w.-]+\\.mjs$' } },
        },
      },
    },
    tests: { type: 'array', maxItems: 10_000, items: testSchema },
    signature: { type: 'string', minLength: 16, maxLength: 256, pattern: '^[A-Za-z0-9+/]+={0,2}$' },
    author: line(256),
    subject: line(1024),
    commit: { type: 'string', pattern: '^[0-9a-f]{7,64}$' },
  },
} as const;

// strictRequired off: a discriminator's tag is required where it is declared, in each branch.
const validate = new Ajv({ allErrors: false, strict: true, strictRequired: false, discriminator: true }).compile<DeployRequest>(deployRequestSchema);

/** The upload checked, or the reason it is refused (naming the field). */
export function checkDeployRequest(body: unknown): { ok: true; request: DeployRequest & { artifact: { manifest: ArtifactManifest } } } | { ok: false; error: string } {
  if (validate(body)) return { ok: true, request: body };
  return { ok: false, error: describeSchemaError(validate.errors?.[0]) };
}
