/**
 * `npm run eval:replies [-- --file NAME ...]`: build the shipped policies and print how they
 * classify the reply corpus (test/fixtures/replies), or only the named files of it — e.g. a
 * held-out set: `npm run eval:replies -- --file heldout-2026-12.tsv`.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { diskHost, findPolicyFiles } from '../cli/common.ts';
import { compile, packageRoot } from '../compiler/index.ts';
import { importArtifactText } from '../runtime/index.ts';
import { corpusFiles, evaluate, formatEvaluation, readCorpus, type CorpusRow } from './reply-corpus.ts';

const USAGE = 'usage: npm run eval:replies [-- --file NAME.tsv ...]\n';
const root = packageRoot();
const dir = path.join(root, 'test', 'fixtures', 'replies');

let files: string[];
let rows: CorpusRow[];
try {
  const { values } = parseArgs({ options: { file: { type: 'string', multiple: true } }, strict: true, allowPositionals: false });
  files = values.file ?? corpusFiles(dir);
  rows = readCorpus(dir, files);
} catch (e) {
  process.stderr.write(`eval:replies: ${(e as Error).message}\n${USAGE}`);
  process.exit(2);
}

const result = await compile({ inputs: findPolicyFiles(['policies', 'stdlib'], root), host: diskHost(root), name: 'policies' });
if (!result.artifact) {
  process.stderr.write('the shipped policies do not build; run `npx petrel check policies stdlib`\n');
  process.exit(3);
}
const artifact = await importArtifactText(result.artifact);
process.stdout.write(`files: ${files.join(', ')}\n`);
process.stdout.write(formatEvaluation(evaluate(artifact, rows)));
