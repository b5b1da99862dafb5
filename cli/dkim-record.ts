/** `petrel dkim-record`: the DNS TXT record that publishes a DKIM signing key. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { DkimConfigError, dkimRecord, loadDkimKeyring } from '../runtime/intake/index.ts';
import { EXIT, parseCommandArgs, UsageError, type Io } from './common.ts';

export const DKIM_RECORD_HELP = `usage: petrel dkim-record <keyfile> --selector <s> --domain <d> [--text]

Print the DNS TXT record that publishes the public half of a DKIM private key (PEM,
RSA or Ed25519, as \`petrel run\`'s dkim.keys take it), as a zone file line:

  S._domainkey.D. IN TXT ( "v=DKIM1; k=rsa; p=..." "..." )

The text is cut into strings of at most 255 characters, as DNS requires; a DNS host's web
form wants the text whole: --text prints only that. Make keys with openssl:

  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pem
  openssl genpkey -algorithm ed25519 -out ed25519.pem

options:
  --selector <s>    the selector (s=) the key signs with (required)
  --domain <d>      the signing domain (d=) (required)
  --text            print the record's text alone, unsplit
  -h, --help        show this help

exit codes: 0 printed, 2 usage error (a missing, unreadable or unsuitable key)
`;

/** `text` as zone-file character strings of at most 255 bytes each (RFC 1035 §3.3). */
function characterStrings(text: string): string {
  const parts = text.match(/.{1,255}/g) ?? [''];
  return parts.map((p) => `"${p}"`).join(' ');
}

export async function dkimRecordCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, { selector: { type: 'string' }, domain: { type: 'string' }, text: { type: 'boolean' } });
  if (values.help) return io.out(DKIM_RECORD_HELP), EXIT.ok;
  if (positionals.length !== 1) throw new UsageError('give one key file');
  if (!values.selector || !values.domain) throw new UsageError('`--selector` and `--domain` are required');
  let record: string;
  let name: string;
  try {
    const [key] = loadDkimKeyring({ keys: [{ domain: values.domain, selector: values.selector, keyFile: path.resolve(io.cwd, positionals[0]!) }] }, (f) => readFileSync(f)).keys;
    record = dkimRecord(key!.privateKey);
    name = `${key!.selector}._domainkey.${key!.domain}.`;
  } catch (e) {
    if (!(e instanceof DkimConfigError)) throw e;
    // The loader names config keys (`dkim.keys.0.keyFile`); here they are this command's.
    throw new UsageError(e.message.replace(/^`dkim\.keys\.0\.keyFile`/, `\`${positionals[0]}\``).replace(/^`dkim\.keys\.0\.(\w+)`/, '`--$1`'));
  }
  io.out(values.text ? `${record}\n` : `${name} IN TXT ( ${characterStrings(record)} )\n`);
  return EXIT.ok;
}
