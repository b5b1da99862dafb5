/** `npm run eval:replies`: build the shipped policies and print how they classify the reply corpus. */
import path from 'node:path';
import { diskHost, findPolicyFiles } from '../cli/common.ts';
import { compile, packageRoot } from '../compiler/index.ts';
import { importArtifactText } from '../runtime/index.ts';
import { evaluate, formatEvaluation, readCorpus } from './reply-corpus.ts';

const root = packageRoot();
const result = await compile({ inputs: findPolicyFiles(['policies', 'stdlib'], root), host: diskHost(root), name: 'policies' });
if (!result.artifact) {
  process.stderr.write('the shipped policies do not build; run `npx petrel check policies stdlib`\n');
  process.exit(3);
}
const artifact = await importArtifactText(result.artifact);
process.stdout.write(formatEvaluation(evaluate(artifact, readCorpus(path.join(root, 'test', 'fixtures', 'replies')))));
