/** `npm run eval:replies`: build the shipped policies and print how they classify the reply corpus. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { diskHost, findPolicyFiles } from '../cli/common.ts';
import { compile, packageRoot } from '../compiler/index.ts';
import type { PolicyArtifact } from '../runtime/index.ts';
import { evaluate, formatEvaluation, readCorpus } from './reply-corpus.ts';

const root = packageRoot();
const result = await compile({ inputs: findPolicyFiles(['policies', 'stdlib'], root), host: diskHost(root), name: 'policies' });
if (!result.artifact) {
  process.stderr.write('the shipped policies do not build; run `npx petrel check policies stdlib`\n');
  process.exit(3);
}
const dir = mkdtempSync(path.join(tmpdir(), 'petrel-eval-'));
writeFileSync(path.join(dir, result.artifact.moduleFile), result.artifact.module);
const artifact = (await import(pathToFileURL(path.join(dir, result.artifact.moduleFile)).href)).default as PolicyArtifact;
rmSync(dir, { recursive: true, force: true });
process.stdout.write(formatEvaluation(evaluate(artifact, readCorpus(path.join(root, 'test', 'fixtures', 'replies')))));
