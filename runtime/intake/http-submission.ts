/**
 * HTTP submission: `POST /api/v1/messages` with a JSON body becomes an RFC 5322 message
 * (composed by nodemailer's MailComposer, or given whole as `raw`) for the spool.
 * The body is validated against a JSON Schema (ajv); a bad field is named in the answer.
 */
import { Ajv, type ErrorObject } from 'ajv';
import MailComposer from 'nodemailer/lib/mail-composer';

/** The request body, as published in `submissionSchema`. */
export interface SubmissionRequest {
  from: string;
  to: string[];
  subject?: string;
  text?: string;
  html?: string;
  /** A whole RFC 5322 message instead of subject/text/html/headers. */
  raw?: string;
  headers?: Record<string, string>;
  tenant?: string;
  pool?: string;
  campaign?: string;
}

export const submissionSchema = {
  $id: 'https://petrel.dev/schemas/submission-1.json',
  type: 'object',
  additionalProperties: false,
  required: ['from', 'to'],
  properties: {
    from: { type: 'string', minLength: 3, maxLength: 320, pattern: '^[^\\s<>@]+@[^\\s<>@]+$' },
    to: { type: 'array', minItems: 1, maxItems: 1000, items: { type: 'string', minLength: 3, maxLength: 320, pattern: '^[^\\s<>@]+@[^\\s<>@]+$' } },
    subject: { type: 'string', maxLength: 998 },
    text: { type: 'string' },
    html: { type: 'string' },
    raw: { type: 'string', minLength: 1 },
    headers: { type: 'object', additionalProperties: { type: 'string' } },
    tenant: { type: 'string', minLength: 1, maxLength: 128 },
    pool: { type: 'string', minLength: 1, maxLength: 128 },
    campaign: { type: 'string', minLength: 1, maxLength: 256 },
  },
  not: { anyOf: [{ required: ['raw', 'text'] }, { required: ['raw', 'html'] }, { required: ['raw', 'subject'] }, { required: ['raw', 'headers'] }] },
} as const;

// strictRequired off: the `not` clause names properties defined at the top level, which strict mode cannot see.
const validate = new Ajv({ allErrors: false, strict: true, strictRequired: false }).compile<SubmissionRequest>(submissionSchema);

/** The request checked, or the reason it is refused (naming the field). */
export function checkSubmission(body: unknown): { ok: true; request: SubmissionRequest } | { ok: false; error: string } {
  if (validate(body)) return { ok: true, request: body };
  const e = validate.errors?.[0];
  if (e?.keyword === 'not') return { ok: false, error: '`raw` is a whole message: give it alone, without subject, text, html or headers' };
  return { ok: false, error: describeSchemaError(e) };
}

/** One line naming the field an ajv error is about: `unknown field \`colour\``, `\`to\` must NOT have fewer than 1 items`. */
export function describeSchemaError(e: ErrorObject | undefined): string {
  if (!e) return 'invalid request';
  const at = e.instancePath.slice(1).replace(/\//g, '.');
  const extra = e.keyword === 'additionalProperties' ? (e.params as { additionalProperty: string }).additionalProperty : undefined;
  if (e.keyword === 'required') return `\`${[at, (e.params as { missingProperty: string }).missingProperty].filter(Boolean).join('.')}\` is required`;
  if (extra !== undefined) return `unknown field \`${[at, extra].filter(Boolean).join('.')}\``;
  return `${at ? `\`${at}\`` : 'the body'} ${e.message}`;
}

/** The message bytes for a checked request. */
export async function composeSubmission(request: SubmissionRequest): Promise<Buffer> {
  if (request.raw !== undefined) return Buffer.from(request.raw.replace(/\r?\n/g, '\r\n'));
  const composer = new MailComposer({
    from: request.from,
    to: request.to,
    ...(request.subject !== undefined ? { subject: request.subject } : {}),
    ...(request.text !== undefined ? { text: request.text } : {}),
    ...(request.html !== undefined ? { html: request.html } : {}),
    ...(request.headers ? { headers: request.headers } : {}),
  });
  return new Promise((resolve, reject) => composer.compile().build((err, message) => (err ? reject(err) : resolve(message))));
}
