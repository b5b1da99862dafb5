/** `petrel keygen`: make an Ed25519 key pair for signing deploys. */
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { newSigningKeyPair } from '../runtime/policy/index.ts';
import { EXIT, parseCommandArgs, UsageError, type Io } from './common.ts';

export const KEYGEN_HELP = `usage: petrel keygen --out <name>

Make an Ed25519 key pair for signing policy artifacts: <name>.key (the private key, PEM,
mode 0600: for \`petrel deploy --sign\` / \`petrel build --sign\`, kept where deploys are
made) and <name>.pub (the public key, PEM: for \`petrel run --deploy-public-key\`). The
same as \`openssl genpkey -algorithm ed25519 -out NAME.key\` and
\`openssl pkey -in NAME.key -pubout -out NAME.pub\`.

options:
  --out <name>      where to write the two files (required); existing files are kept
  -h, --help        show this help

exit codes: 0 written, 2 usage error
`;

export async function keygenCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, { out: { type: 'string' } });
  if (values.help) return io.out(KEYGEN_HELP), EXIT.ok;
  if (positionals.length > 0) throw new UsageError(`unexpected \`${positionals[0]}\``);
  if (!values.out) throw new UsageError('`--out NAME` is required');
  const base = path.resolve(io.cwd, values.out);
  const files = { private: `${base}.key`, public: `${base}.pub` };
  for (const f of Object.values(files)) if (existsSync(f)) throw new UsageError(`${f} exists; not replacing a key`);
  const pair = newSigningKeyPair();
  writeFileSync(files.private, pair.privatePem, { mode: 0o600, flag: 'wx' });
  writeFileSync(files.public, pair.publicPem, { flag: 'wx' });
  io.err(`wrote ${files.private} (private: for --sign) and ${files.public} (public: for petrel run --deploy-public-key)\n`);
  return EXIT.ok;
}
