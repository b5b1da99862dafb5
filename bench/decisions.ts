/**
 * `npm run bench`: how fast compiled artifacts answer, side by side with the reference
 * interpreter on identical inputs, plus compile time, artifact size, load time and heap.
 *
 * Before anything is timed, both sides are asked every input and must give equal
 * answers, so the figures can never compare different results. Two floor rows show what
 * merely reading the same replies costs on this machine (see docs/performance.md).
 *
 *   npm run bench            a table
 *   npm run bench -- --json  the same figures as JSON
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { Bench } from 'tinybench';
import { diskHost, findPolicyFiles } from '../cli/common.ts';
import { compile, interpret, packageRoot, type CompileResult, type SourceHost } from '../compiler/index.ts';
import type { PolicyArtifact } from '../runtime/index.ts';
import { readCorpus } from '../scripts/reply-corpus.ts';
import { generatedReplies, generatePolicySet, routeInputs } from './generate.ts';

const asJson = process.argv.includes('--json');
const quick = process.argv.includes('--quick');
const root = packageRoot();
const work = mkdtempSync(path.join(tmpdir(), 'petrel-bench-'));
const log = (line: string) => {
  if (!asJson) process.stderr.write(line + '\n');
};

function memoryHost(files: Record<string, string>): SourceHost {
  const disk = diskHost('/bench');
  return { cwd: '/bench', readFile: (p) => (p.startsWith('/bench/') ? files[p.slice('/bench/'.length)] : disk.readFile(p)) };
}

async function timedCompile(name: string, run: () => Promise<CompileResult>): Promise<{ result: CompileResult; ms: number }> {
  const start = performance.now();
  const result = await run();
  const ms = performance.now() - start;
  if (!result.artifact) throw new Error(`${name} does not compile: ${JSON.stringify(result.diagnostics.slice(0, 3))}`);
  log(`compiled ${name} in ${ms.toFixed(0)} ms`);
  return { result, ms };
}

async function load(result: CompileResult, name: string): Promise<{ compiled: PolicyArtifact; reference: PolicyArtifact; file: string }> {
  const file = path.join(work, `${name}-${result.artifact!.moduleFile}`);
  writeFileSync(file, result.artifact!.module);
  const compiled = (await import(pathToFileURL(file).href)).default as PolicyArtifact;
  return { compiled, reference: interpret(result.ir!, compiled.meta), file };
}

/** Load time and heap growth of importing a module, in a fresh process each time (median of 5). */
function measureLoad(file: string): { loadMs: number; heapMB: number } {
  const script = `
    globalThis.gc(); globalThis.gc();
    const before = process.memoryUsage().heapUsed;
    const t = performance.now();
    const m = (await import(${JSON.stringify(pathToFileURL(file).href)})).default;
    const loadMs = performance.now() - t;
    m.route('warm.example');
    globalThis.gc(); globalThis.gc();
    process.stdout.write(JSON.stringify({ loadMs, heapMB: (process.memoryUsage().heapUsed - before) / 1048576 }));`;
  const runs = Array.from({ length: 5 }, () => {
    const r = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    if (r.status !== 0) throw new Error(r.stderr);
    return JSON.parse(r.stdout) as { loadMs: number; heapMB: number };
  });
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  return { loadMs: median(runs.map((r) => r.loadMs)), heapMB: median(runs.map((r) => r.heapMB)) };
}

/** Fails loudly if the two sides disagree on any input. */
function assertSame(what: string, inputs: unknown[], compiled: (x: never) => unknown, reference: (x: never) => unknown): void {
  for (const input of inputs) {
    const a = compiled(input as never);
    const b = reference(input as never);
    if (!isDeepStrictEqual(JSON.parse(JSON.stringify(a ?? null)), JSON.parse(JSON.stringify(b ?? null))) && !(a === Infinity && b === Infinity)) {
      throw new Error(`${what}: compiled and interpreted disagree on ${JSON.stringify(input)}:\n${JSON.stringify(a)}\n${JSON.stringify(b)}`);
    }
  }
  log(`checked ${what}: ${inputs.length} inputs, equal answers`);
}

interface OpFigures {
  op: string;
  set: string;
  inputs: number;
  compiledOpsPerSec: number;
  interpretedOpsPerSec: number;
  ratio: number;
}

/**
 * A tinybench run decided by time windows, not iteration counts: tinybench's default
 * minimum of 64 + 16 iterations made the interpreter's 10,000 route lookups (≈2 s each)
 * take minutes.
 */
const timingBench = () => new Bench({ time: quick ? 200 : 1000, warmupTime: quick ? 50 : 200, iterations: 5, warmupIterations: 2 });

/** Operations per second of task `name` of a finished run, each iteration of which ran `inputs` operations. */
function opsPerSecond(bench: Bench, name: string, inputs: number, what: string): number {
  const result = bench.tasks.find((t) => t.name === name)!.result;
  if (!result || !('throughput' in result)) throw new Error(`${what}: tinybench did not finish ${name}`);
  return result.throughput.mean * inputs;
}

/** Ops per second of `fn` over all inputs, both sides, in one tinybench run. */
async function compare(op: string, set: string, inputs: unknown[], compiled: (x: never) => unknown, reference: (x: never) => unknown): Promise<OpFigures> {
  assertSame(`${op} on ${set}`, inputs, compiled, reference);
  const bench = timingBench();
  let sink: unknown;
  bench.add('compiled', () => {
    for (let i = 0; i < inputs.length; i++) sink = compiled(inputs[i] as never);
  });
  bench.add('interpreted', () => {
    for (let i = 0; i < inputs.length; i++) sink = reference(inputs[i] as never);
  });
  await bench.run();
  void sink;
  const perSec = (name: string) => opsPerSecond(bench, name, inputs.length, op);
  const figures = { op, set, inputs: inputs.length, compiledOpsPerSec: perSec('compiled'), interpretedOpsPerSec: perSec('interpreted'), ratio: perSec('compiled') / perSec('interpreted') };
  log(`${op} on ${set}: ${fmt(figures.compiledOpsPerSec)}/s compiled, ${fmt(figures.interpretedOpsPerSec)}/s interpreted, ×${figures.ratio.toFixed(1)}`);
  return figures;
}

/**
 * What reading the replies costs on this machine, whatever decides about them: every
 * character read once, and the cheapest automaton there is (one class lookup and one
 * dependent table step per character, over a table small enough to stay in the L1 cache).
 * Any matcher that must see every character of a reply is bounded by these rates.
 */
async function replyFloor(texts: string[]): Promise<{ readOpsPerSec: number; stepOpsPerSec: number; meanLength: number }> {
  const classes = new Uint8Array(65536);
  for (let c = 0; c < classes.length; c++) classes[c] = (c * 2654435761) >>> 28; // 16 classes
  const width = 16;
  const table = new Int32Array(4 * width);
  for (let i = 0; i < table.length; i++) table[i] = ((i * 7) % 4) * width;
  let sink = 0;
  const bench = timingBench();
  bench.add('read', () => {
    for (let t = 0; t < texts.length; t++) {
      const text = texts[t]!;
      let sum = 0;
      for (let i = 0; i < text.length; i++) sum += text.charCodeAt(i);
      sink ^= sum;
    }
  });
  bench.add('step', () => {
    for (let t = 0; t < texts.length; t++) {
      const text = texts[t]!;
      let row = 0;
      for (let i = 0; i < text.length; i++) row = table[row + classes[text.charCodeAt(i)]!]!;
      sink ^= row;
    }
  });
  await bench.run();
  void sink;
  const figures = { readOpsPerSec: opsPerSecond(bench, 'read', texts.length, 'floor'), stepOpsPerSec: opsPerSecond(bench, 'step', texts.length, 'floor'), meanLength: texts.reduce((n, t) => n + t.length, 0) / texts.length };
  log(`floor: reading each reply ${fmt(figures.readOpsPerSec)}/s, one table step a character ${fmt(figures.stepOpsPerSec)}/s (mean ${figures.meanLength.toFixed(0)} characters)`);
  return figures;
}

const fmt = (n: number) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : n.toFixed(0));

// --- compile ---------------------------------------------------------------------------
const shippedInputs = findPolicyFiles(['policies', 'stdlib'], root);
const shipped = await timedCompile('shipped policies', () => compile({ inputs: shippedInputs, host: diskHost(root), name: 'policies' }));
const gen1k = generatePolicySet(1000, 2000);
const gen10k = generatePolicySet(10_000, 2000);
const compiled1k = await timedCompile('1,000 domains, 2,000 rules', () => compile({ inputs: ['gen.policy'], host: memoryHost({ 'gen.policy': gen1k.text }), name: 'gen1k' }));
const compiled10k = await timedCompile('10,000 domains, 2,000 rules', () => compile({ inputs: ['gen.policy'], host: memoryHost({ 'gen.policy': gen10k.text }), name: 'gen10k' }));

const s = await load(shipped.result, 'shipped');
const g = await load(compiled10k.result, 'gen10k');

// --- inputs ----------------------------------------------------------------------------
const corpus = readCorpus(path.join(root, 'test', 'fixtures', 'replies'));
const shippedRoutes = shipped.result.ir!.routes.map((r) => r.id);
const replies = [...corpus.map((r) => ({ route: r.route, reply: r.reply })), ...generatedReplies(1000).map((reply, i) => ({ route: shippedRoutes[i % shippedRoutes.length]!, reply }))];
const lookups = routeInputs(gen10k, 10_000);
const settingsInputs = shippedRoutes.flatMap((route) => [{ route }, { route, source: 'nope' }]);
const attempts = shippedRoutes.flatMap((route) => Array.from({ length: 30 }, (_, i) => ({ route, attempt: i + 1 })));
const warmupInputs = Object.keys(shipped.result.ir!.warmups).flatMap((ramp) => shippedRoutes.flatMap((route) => Array.from({ length: 40 }, (_, day) => ({ ramp, route, day }))));

// --- measure ---------------------------------------------------------------------------
type Reply = { route: string; reply: string };
type Lookup = { domain: string; mx?: string[] };
type SettingsIn = { route: string; source?: string };
type AttemptIn = { route: string; attempt: number };
type WarmupIn = { ramp: string; route: string; day: number };
const ops: OpFigures[] = [];
ops.push(await compare('react', 'shipped', replies, (x: Reply) => s.compiled.react(x.route, x.reply), (x: Reply) => s.reference.react(x.route, x.reply)));
// The same replies split: the mix is 89% failures (the corpus is failures by design),
// where a real MTA's replies are mostly 2xx.
const success = (x: Reply) => /^[23]\d\d(?:[ -]|$)/.test(x.reply);
ops.push(await compare('react', 'only 2xx/3xx', replies.filter(success), (x: Reply) => s.compiled.react(x.route, x.reply), (x: Reply) => s.reference.react(x.route, x.reply)));
ops.push(await compare('react', 'only failed', replies.filter((x) => !success(x)), (x: Reply) => s.compiled.react(x.route, x.reply), (x: Reply) => s.reference.react(x.route, x.reply)));
ops.push(await compare('route', '10k domains', lookups, (x: Lookup) => g.compiled.route(x.domain, x.mx), (x: Lookup) => g.reference.route(x.domain, x.mx)));
ops.push(await compare('settings', 'shipped', settingsInputs, (x: SettingsIn) => s.compiled.settings(x.route, x.source), (x: SettingsIn) => s.reference.settings(x.route, x.source)));
ops.push(await compare('retryDelay', 'shipped', attempts, (x: AttemptIn) => s.compiled.retryDelay(x.route, x.attempt), (x: AttemptIn) => s.reference.retryDelay(x.route, x.attempt)));
if (warmupInputs.length) ops.push(await compare('warmupLimit', 'shipped', warmupInputs, (x: WarmupIn) => s.compiled.warmupLimit(x.ramp, x.route, x.day), (x: WarmupIn) => s.reference.warmupLimit(x.ramp, x.route, x.day)));

const floor = await replyFloor(replies.map((r) => r.reply));
const loads = { shipped: measureLoad(s.file), gen10k: measureLoad(g.file) };
const figures = {
  machine: { cpus: cpus().length, model: cpus()[0]?.model ?? 'unknown', node: process.version },
  ops,
  floor,
  compileMs: { shipped: shipped.ms, domains1k_rules2k: compiled1k.ms, domains10k_rules2k: compiled10k.ms },
  artifactBytes: { shipped: Buffer.byteLength(shipped.result.artifact!.module), domains10k_rules2k: Buffer.byteLength(compiled10k.result.artifact!.module) },
  loadMs: { shipped: loads.shipped.loadMs, domains10k_rules2k: loads.gen10k.loadMs },
  heapMB: { shipped: loads.shipped.heapMB, domains10k_rules2k: loads.gen10k.heapMB },
  sets: { shippedRoutes: shippedRoutes.length, shippedRules: shipped.result.ir!.rules.length, replies: replies.length, gen10kRules: gen10k.rules },
};
rmSync(work, { recursive: true, force: true });

if (asJson) process.stdout.write(JSON.stringify(figures, null, 2) + '\n');
else {
  const lines = [
    `Petrel decision benchmark — ${figures.machine.cpus} × ${figures.machine.model}, Node ${figures.machine.node}`,
    '',
    `${'operation'.padEnd(12)} ${'set'.padEnd(12)} ${'compiled/s'.padStart(12)} ${'interpreted/s'.padStart(14)} ${'ratio'.padStart(7)}`,
    ...ops.map((o) => `${o.op.padEnd(12)} ${o.set.padEnd(12)} ${fmt(o.compiledOpsPerSec).padStart(12)} ${fmt(o.interpretedOpsPerSec).padStart(14)} ${('×' + o.ratio.toFixed(1)).padStart(7)}`),
    `${'floor'.padEnd(12)} ${'replies'.padEnd(12)} read every character ${fmt(floor.readOpsPerSec)}/s; one table step a character ${fmt(floor.stepOpsPerSec)}/s (mean ${floor.meanLength.toFixed(0)} characters)`,
    '',
    `compile (text → artifact): shipped ${figures.compileMs.shipped.toFixed(0)} ms; 1k domains + 2k rules ${figures.compileMs.domains1k_rules2k.toFixed(0)} ms; 10k domains + 2k rules ${figures.compileMs.domains10k_rules2k.toFixed(0)} ms`,
    `artifact size: shipped ${(figures.artifactBytes.shipped / 1024).toFixed(0)} KB; 10k domains ${(figures.artifactBytes.domains10k_rules2k / 1024).toFixed(0)} KB`,
    `load (import): shipped ${figures.loadMs.shipped.toFixed(1)} ms; 10k domains ${figures.loadMs.domains10k_rules2k.toFixed(1)} ms`,
    `heap after load: shipped ${figures.heapMB.shipped.toFixed(1)} MB; 10k domains ${figures.heapMB.domains10k_rules2k.toFixed(1)} MB`,
    `inputs: ${figures.sets.replies} replies over ${figures.sets.shippedRoutes} shipped routes (${figures.sets.shippedRules} rules); 10,000 route lookups`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
}
