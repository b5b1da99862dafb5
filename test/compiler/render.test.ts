import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import AjvDraft04 from 'ajv-draft-04';
import addFormatsModule from 'ajv-formats';
import { describe, it, expect } from 'vitest';
import { fileSpan, type Diagnostic, type Span } from '../../grammar/index.ts';
import { CODES } from '../../compiler/codes.ts';
import { OUTPUT_FORMATS, renderDiagnostics, type RenderOptions } from '../../compiler/render.ts';

/** The span of the first `needle` in `text`, positioned the way the lexer positions tokens. */
function spanOf(file: string, text: string, needle: string): Span {
  const offset = text.indexOf(needle);
  if (offset < 0) throw new Error(`${needle} not in ${file}`);
  return spanBetween(file, text, offset, offset + needle.length);
}

function spanBetween(file: string, text: string, offset: number, endOffset: number): Span {
  const position = (at: number) => {
    const before = text.slice(0, at);
    return { line: before.split('\n').length, column: at - before.lastIndexOf('\n') };
  };
  const start = position(offset);
  // `end*` is inclusive: the position of the last character, or of the start when empty.
  const end = endOffset > offset ? position(endOffset - 1) : start;
  return { file, line: start.line, column: start.column, endLine: end.line, endColumn: end.column, offset, endOffset };
}

const MAIN_FILE = 'policies/main.policy';
const MAIN = [
  'policy acme version 1.0',
  'use stdlib/retry',
  '',
  '# shared limits',
  'pool warm {',
  '  max-connections 20',
  '}',
  '',
  'tenant shop {',
  '  source mx1',
  '  pool wram',
  '}',
  '',
].join('\n');

// Deliberately absent from `sources`, as a file the CLI could not read would be.
const RETRY_FILE = 'stdlib/retry.policy';
const RETRY = 'policy retry version 1\nreplies {\n  greylist when /^4\\d\\d greylist/ -> retry\n}\n';

const unknownPool: Diagnostic = {
  code: 'RES001',
  severity: 'error',
  message: 'unknown pool `wram`',
  span: spanOf(MAIN_FILE, MAIN, 'wram'),
  labels: [{ span: spanOf(MAIN_FILE, MAIN, 'warm'), message: 'pool `warm` defined here' }],
  help: 'did you mean `warm`?',
};

const ruleWithoutExample: Diagnostic = {
  code: 'VAL007',
  severity: 'warning',
  message: 'reply rule `greylist` has no `example`',
  span: spanOf(RETRY_FILE, RETRY, 'greylist'),
};

const options: RenderOptions = { sources: new Map([[MAIN_FILE, MAIN]]), toolVersion: '0.1.0' };

function error(code: string, message: string, span: Span): Diagnostic {
  return { code, severity: 'error', message, span };
}

function human(diagnostics: readonly Diagnostic[], sources: ReadonlyMap<string, string> = options.sources): string {
  return renderDiagnostics(diagnostics, 'human', { ...options, sources });
}

describe('renderDiagnostics', () => {
  it('offers exactly the four formats', () => {
    expect(OUTPUT_FORMATS).toEqual(['human', 'json', 'github', 'sarif']);
  });
});

describe('human format', () => {
  it('prints a snippet with an aligned underline, notes, help and a summary', () => {
    expect(human([unknownPool, ruleWithoutExample])).toBe(
      [
        'policies/main.policy:11:8: error[RES001]: unknown pool `wram`',
        ' 11 |   pool wram',
        '    |        ^^^^',
        '  = note: policies/main.policy:5:6: pool `warm` defined here',
        '  = help: did you mean `warm`?',
        '',
        'stdlib/retry.policy:3:3: warning[VAL007]: reply rule `greylist` has no `example`',
        '',
        '1 error, 1 warning',
        '',
      ].join('\n'),
    );
  });

  it('prints nothing at all for no diagnostics', () => {
    expect(human([])).toBe('');
  });

  it('counts errors and warnings with the right plural', () => {
    const summaryOf = (diagnostics: readonly Diagnostic[]) => human(diagnostics).trimEnd().split('\n').at(-1);
    expect(summaryOf([unknownPool])).toBe('1 error, 0 warnings');
    expect(summaryOf([unknownPool, unknownPool])).toBe('2 errors, 0 warnings');
    expect(summaryOf([ruleWithoutExample])).toBe('0 errors, 1 warning');
    expect(summaryOf([unknownPool, ruleWithoutExample, ruleWithoutExample])).toBe('1 error, 2 warnings');
  });

  it('keeps the underline under the token when the line has tabs', () => {
    const text = '\tpool\twram\n';
    const out = human([error('RES001', 'unknown pool `wram`', spanOf('t.policy', text, 'wram'))], new Map([['t.policy', text]]));
    expect(out.split('\n').slice(0, 3)).toEqual([
      't.policy:1:7: error[RES001]: unknown pool `wram`',
      ' 1 |  pool wram',
      '   |       ^^^^',
    ]);
  });

  it('underlines a multi-line span to the end of its first line', () => {
    const start = MAIN.indexOf('tenant');
    const span = spanBetween(MAIN_FILE, MAIN, start, MAIN.indexOf('}', start) + 1);
    expect(span).toMatchObject({ line: 9, endLine: 12 });
    const out = human([error('VAL011', 'a tenant cannot set `pool`', span)]);
    expect(out.split('\n').slice(1, 3)).toEqual([' 9 | tenant shop {', '   | ^^^^^^^^^^^^^']);
  });

  it('puts one caret at an empty span, even past the end of the line', () => {
    const endOfLine = MAIN.indexOf('20') + 2;
    const missing = error('PARSE002', 'expected `}` after `20`', spanBetween(MAIN_FILE, MAIN, endOfLine, endOfLine));
    expect(human([missing]).split('\n').slice(0, 3)).toEqual([
      'policies/main.policy:6:21: error[PARSE002]: expected `}` after `20`',
      ' 6 |   max-connections 20',
      '   |                     ^',
    ]);
    const header = error('PARSE006', 'a policy file must start with `policy NAME version VERSION`', fileSpan(MAIN_FILE));
    expect(human([header]).split('\n').slice(1, 3)).toEqual([' 1 | policy acme version 1.0', '   | ^']);
  });

  it('counts an astral character as one cell when aligning the underline', () => {
    const text = 'note "📧" wram\n';
    const out = human([error('RES001', 'unknown pool `wram`', spanOf('e.policy', text, 'wram'))], new Map([['e.policy', text]]));
    expect(out.split('\n').slice(0, 3)).toEqual([
      'e.policy:1:11: error[RES001]: unknown pool `wram`',
      ' 1 | note "📧" wram',
      '   |          ^^^^',
    ]);
  });

  it('renders CRLF sources without a stray carriage return', () => {
    const text = MAIN.replaceAll('\n', '\r\n');
    const out = human([{ ...unknownPool, span: spanOf(MAIN_FILE, text, 'wram') }], new Map([[MAIN_FILE, text]]));
    expect(out).not.toContain('\r');
    expect(out.split('\n')[1]).toBe(' 11 |   pool wram');
  });

  it('adds ANSI colours only when asked, around the same text', () => {
    const plain = human([unknownPool, ruleWithoutExample]);
    expect(plain).not.toContain('\x1b[');
    const coloured = renderDiagnostics([unknownPool, ruleWithoutExample], 'human', { ...options, color: true });
    expect(coloured).toContain('\x1b[1;31merror[RES001]\x1b[0m');
    expect(coloured).toContain('\x1b[1;33mwarning[VAL007]\x1b[0m');
    expect(coloured.replaceAll(/\x1b\[[0-9;]*m/g, '')).toBe(plain);
  });
});

describe('json format', () => {
  it('flattens each diagnostic to positions and omits absent help and labels', () => {
    const out = renderDiagnostics([unknownPool, ruleWithoutExample], 'json', options);
    expect(out.endsWith('}\n]\n')).toBe(true);
    const parsed: unknown = JSON.parse(out);
    expect(out).toBe(`${JSON.stringify(parsed, null, 2)}\n`);
    expect(parsed).toStrictEqual([
      {
        code: 'RES001',
        severity: 'error',
        message: 'unknown pool `wram`',
        file: 'policies/main.policy',
        line: 11,
        column: 8,
        endLine: 11,
        endColumn: 11,
        help: 'did you mean `warm`?',
        labels: [{ file: 'policies/main.policy', line: 5, column: 6, message: 'pool `warm` defined here' }],
      },
      {
        code: 'VAL007',
        severity: 'warning',
        message: 'reply rule `greylist` has no `example`',
        file: 'stdlib/retry.policy',
        line: 3,
        column: 3,
        endLine: 3,
        endColumn: 10,
      },
    ]);
  });

  it('prints an empty array for no diagnostics', () => {
    expect(renderDiagnostics([], 'json', options)).toBe('[]\n');
  });
});

describe('github format', () => {
  it('prints one workflow command per diagnostic, with help in the message', () => {
    expect(renderDiagnostics([unknownPool, ruleWithoutExample], 'github', options)).toBe(
      '::error file=policies/main.policy,line=11,col=8,endLine=11,endColumn=11,title=RES001::unknown pool `wram` (help: did you mean `warm`?)\n' +
        '::warning file=stdlib/retry.policy,line=3,col=3,endLine=3,endColumn=10,title=VAL007::reply rule `greylist` has no `example`\n',
    );
  });

  it('escapes the message data and, more strictly, the property values', () => {
    const awkward: Diagnostic = {
      code: 'VAL003',
      severity: 'error',
      message: 'regex `100%` fails: a, b: c\r\nnext',
      span: { ...unknownPool.span, file: 'C:\\odd,dir\\50%.policy' },
      help: 'line one\nline two',
    };
    expect(renderDiagnostics([awkward], 'github', options)).toBe(
      '::error file=C%3A\\odd%2Cdir\\50%25.policy,line=11,col=8,endLine=11,endColumn=11,title=VAL003::' +
        'regex `100%25` fails: a, b: c%0D%0Anext (help: line one%0Aline two)\n',
    );
  });

  it('prints nothing for no diagnostics', () => {
    expect(renderDiagnostics([], 'github', options)).toBe('');
  });
});

describe('sarif format', () => {
  // The SARIF 2.1.0 schema as shipped by Microsoft's SARIF SDK (`@microsoft/jest-sarif`),
  // the 2.1.0 release-candidate-5 text that became the standard; it is written in draft-04.
  const require = createRequire(import.meta.url);
  const schema: unknown = JSON.parse(readFileSync(require.resolve('@microsoft/jest-sarif/lib/schemas/sarif-2.1.0-rtm.5.json'), 'utf8'));
  // Both packages are CommonJS whose `module.exports` carries the export as `.default` too;
  // under NodeNext that property is the typed way to reach it.
  // `unicodeRegExp: false`: this schema's `language` pattern has a stray `]` that is legal
  // in a plain ECMAScript regex (as draft-04 specifies) but not under the `u` flag.
  const ajv = new AjvDraft04.default({ allErrors: true, unicodeRegExp: false });
  addFormatsModule.default(ajv);
  const validateSarif = ajv.compile(schema as object);

  function sarif(diagnostics: readonly Diagnostic[]) {
    const out = renderDiagnostics(diagnostics, 'sarif', options);
    const log = JSON.parse(out);
    expect(out).toBe(`${JSON.stringify(log, null, 2)}\n`);
    return log;
  }

  function expectValid(log: unknown): void {
    const valid = validateSarif(log);
    expect(validateSarif.errors ?? []).toEqual([]);
    expect(valid).toBe(true);
  }

  const elsewhere: Diagnostic[] = [
    error('RES004', '`use` names a missing file', spanOf('/srv/policy files/a#1.policy', 'use "./x"', '"./x"')),
    error('RES004', '`use` names a missing file', spanOf('C:\\work\\b.policy', 'use "./x"', '"./x"')),
    error('RES004', '`use` names a missing file', spanOf('policies\\win.policy', 'use "./x"', '"./x"')),
    error('PARSE006', 'a policy file must start with `policy NAME version VERSION`', fileSpan('empty.policy')),
  ];

  it('validates against the SARIF 2.1.0 schema', () => {
    expectValid(sarif([unknownPool, ruleWithoutExample, ...elsewhere]));
    expectValid(sarif([]));
  });

  it('has a validator that rejects what the schema forbids', () => {
    const log = sarif([unknownPool]);
    log.runs[0].results[0].level = 'fatal';
    expect(validateSarif(log)).toBe(false);
    const noRegionStart = sarif([unknownPool]);
    noRegionStart.runs[0].results[0].locations[0].physicalLocation.region.startLine = 0;
    expect(validateSarif(noRegionStart)).toBe(false);
  });

  it('names the tool and lists every registered code as a rule', () => {
    const log = sarif([]);
    expect(log.$schema).toBe('https://json.schemastore.org/sarif-2.1.0.json');
    expect(log.version).toBe('2.1.0');
    expect(log.runs).toHaveLength(1);
    const { driver } = log.runs[0].tool;
    expect(driver).toMatchObject({ name: 'petrel', version: '0.1.0', informationUri: 'https://github.com/petrel/petrel' });
    expect(driver.rules.map((rule: { id: string }) => rule.id)).toEqual(Object.keys(CODES));
    expect(driver.rules[Object.keys(CODES).indexOf('VAL007')]).toEqual({
      id: 'VAL007',
      name: 'rule-without-example',
      shortDescription: { text: CODES.VAL007.summary },
      defaultConfiguration: { level: 'warning' },
      helpUri: 'https://github.com/petrel/petrel/blob/main/docs/language.md#val007',
    });
    expect(log.runs[0].results).toEqual([]);
  });

  it('turns a diagnostic into a result with an exclusive end column and related locations', () => {
    const log = sarif([unknownPool, ruleWithoutExample]);
    const [result, warning] = log.runs[0].results;
    expect(log.runs[0].tool.driver.rules[result.ruleIndex].id).toBe('RES001');
    expect(result).toEqual({
      ruleId: 'RES001',
      ruleIndex: Object.keys(CODES).indexOf('RES001'),
      level: 'error',
      message: { text: 'unknown pool `wram` — help: did you mean `warm`?' },
      locations: [
        {
          physicalLocation: {
            artifactLocation: { uri: 'policies/main.policy', uriBaseId: '%SRCROOT%' },
            region: { startLine: 11, startColumn: 8, endLine: 11, endColumn: 12 },
          },
        },
      ],
      relatedLocations: [
        {
          id: 0,
          physicalLocation: {
            artifactLocation: { uri: 'policies/main.policy', uriBaseId: '%SRCROOT%' },
            region: { startLine: 5, startColumn: 6, endLine: 5, endColumn: 10 },
          },
          message: { text: 'pool `warm` defined here' },
        },
      ],
    });
    expect(warning).toMatchObject({ ruleId: 'VAL007', level: 'warning', message: { text: 'reply rule `greylist` has no `example`' } });
    expect(warning).not.toHaveProperty('relatedLocations');
  });

  it('keeps relative paths relative to the source root and makes absolute ones file URIs', () => {
    const locations = sarif(elsewhere).runs[0].results.map(
      (result: { locations: { physicalLocation: { artifactLocation: unknown } }[] }) => result.locations[0]!.physicalLocation.artifactLocation,
    );
    expect(locations).toEqual([
      { uri: 'file:///srv/policy%20files/a%231.policy' },
      { uri: 'file:///C:/work/b.policy' },
      { uri: 'policies/win.policy', uriBaseId: '%SRCROOT%' },
      { uri: 'empty.policy', uriBaseId: '%SRCROOT%' },
    ]);
  });

  it('keeps an empty span empty', () => {
    const region = sarif([elsewhere[3]!]).runs[0].results[0].locations[0].physicalLocation.region;
    expect(region).toEqual({ startLine: 1, startColumn: 1, endLine: 1, endColumn: 1 });
  });

  it('refuses a code missing from the registry', () => {
    expect(() => renderDiagnostics([{ ...unknownPool, code: 'NOPE001' }], 'sarif', options)).toThrow(/unregistered diagnostic code NOPE001/);
  });
});
