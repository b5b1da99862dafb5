/**
 * `SPOOL/runtime-state.json`: the state a restart must not forget — backoffs, suspensions,
 * disabled sources, trigger counts, pauses and the day's warmup counts. Written whole
 * (a temporary file, then a rename); read back checked against a schema. A file that
 * cannot be read, is too large, is not JSON or holds a value out of shape is set aside as
 * `runtime-state.json.bad-TIMESTAMP` with a warning naming both files and the problem,
 * and the runtime starts with empty state: a bad file costs its state, never a crash loop.
 */
import { Ajv } from 'ajv';
import { readFile, rename, stat, writeFile } from 'node:fs/promises';
import { describeSchemaError } from '../intake/index.ts';
import { policyStateSnapshotSchema, type PolicyStateSnapshot } from './policy-state.ts';
import { isoTime, printable } from '../observe/index.ts';

/** What the file holds. */
export interface RuntimeStateFile {
  version: 1;
  policy: PolicyStateSnapshot;
  paused: string[];
  /** Messages sent per `source|route|UTC day` by warming-up sources (today's only). */
  warmup: [string, number][];
}

/** The largest state file read; a larger one is set aside unread. */
export const MAX_STATE_FILE_BYTES = 64 * 1024 * 1024;

const MAX_ENTRIES = 1_000_000;
const key = { type: 'string', maxLength: 2048 } as const;
const runtimeStateSchema = {
  type: 'object',
  required: ['version', 'policy', 'paused', 'warmup'],
  properties: {
    version: { const: 1 },
    policy: policyStateSnapshotSchema,
    paused: { type: 'array', maxItems: MAX_ENTRIES, items: key },
    warmup: { type: 'array', maxItems: MAX_ENTRIES, items: { type: 'array', minItems: 2, items: [key, { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER }], additionalItems: false } },
  },
} as const;

const validate = new Ajv({ allErrors: false, strict: true }).compile<RuntimeStateFile>(runtimeStateSchema);

/**
 * The saved state, or undefined when there is none to use: no file (a first start), or a
 * bad one, which is set aside with a warning. Never throws.
 */
export async function readRuntimeState(file: string, now: number): Promise<RuntimeStateFile | undefined> {
  const read = await readChecked(file);
  if ('state' in read) return read.state;
  if (read.problem !== undefined) await setAside(file, read.problem, now);
  return undefined;
}

/** The file's state if it passes the schema, else what is wrong with it (no `problem`: no file). */
async function readChecked(file: string): Promise<{ state: RuntimeStateFile } | { problem?: string }> {
  let text: string;
  try {
    const { size } = await stat(file);
    if (size > MAX_STATE_FILE_BYTES) return { problem: `it is ${size} bytes, more than the ${MAX_STATE_FILE_BYTES} a state file may be` };
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    return { problem: `it cannot be read: ${(e as Error).message}` };
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    return { problem: `it is not JSON: ${(e as Error).message}` };
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return { problem: 'it is not a JSON object' };
  if (validate(data)) return { state: data };
  return { problem: describeSchemaError(validate.errors?.[0]) };
}

/** Renames a bad state file out of the way (so the next start does not meet it again) and says so. */
async function setAside(file: string, problem: string, now: number): Promise<void> {
  const aside = `${file}.bad-${isoTime(now).replace(/[:.]/g, '-')}`;
  const why = printable(problem, 1000);
  try {
    await rename(file, aside);
    process.emitWarning(`petrel: set aside ${file} as ${aside}: ${why}; backoffs, suspensions and pauses start empty`);
  } catch (e) {
    process.emitWarning(`petrel: ignoring ${file} (${why}) and cannot set it aside: ${printable((e as Error).message, 1000)}; backoffs, suspensions and pauses start empty`);
  }
}

/** Writes the file whole: a reader sees the old state or the new one, never half of one. */
export async function writeRuntimeState(file: string, data: RuntimeStateFile): Promise<void> {
  const tmp = `${file}.tmp`;
  await writeFile(tmp, JSON.stringify(data));
  await rename(tmp, file);
}
