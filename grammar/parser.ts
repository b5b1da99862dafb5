/**
 * The concrete syntax: a policy file is a list of statements; a statement is a run of
 * atoms (words, literals, commas, colons) optionally followed by a `{ … }` block of
 * statements, ended by a newline, `;`, a closing `}` or the end of the file.
 *
 * The grammar is deliberately this small. What each statement means (its keyword and
 * arguments) is read in `build-ast.ts`, which can then say precisely what is wrong with
 * a statement ("`rate` takes a rate such as `20/s`") while the parser's error recovery
 * only ever has to resynchronise on braces and line ends. One bad line never hides the
 * next one.
 */
import { CstParser, EOF, type CstNode, type IToken } from 'chevrotain';
import * as t from './tokens.ts';

class PolicyCstParser extends CstParser {
  constructor() {
    super(t.allTokens, { recoveryEnabled: true, maxLookahead: 2 });
    this.performSelfAnalysis();
  }

  /** Top level: like `statements`, but a stray `}` is kept (and reported) instead of ending the file. */
  public file = this.RULE('file', () => {
    this.MANY(() => {
      this.OR([
        { ALT: () => this.CONSUME(t.Newline) },
        { ALT: () => this.CONSUME(t.Semicolon) },
        { ALT: () => this.CONSUME(t.RCurly) },
        { ALT: () => this.SUBRULE(this.statement) },
      ]);
    });
  });

  /** Statements up to a `}` or the end of input; blank lines and `;` between them. */
  private statements = this.RULE('statements', () => {
    this.MANY(() => {
      this.OR([
        { ALT: () => this.CONSUME(t.Newline) },
        { ALT: () => this.CONSUME(t.Semicolon) },
        { ALT: () => this.SUBRULE(this.statement) },
      ]);
    });
  });

  private statement = this.RULE('statement', () => {
    this.AT_LEAST_ONE(() => this.SUBRULE(this.atom));
    this.OPTION(() => this.SUBRULE(this.block));
  });

  private block = this.RULE('block', () => {
    this.CONSUME(t.LCurly);
    this.SUBRULE(this.statements);
    this.CONSUME(t.RCurly);
  });

  private atom = this.RULE('atom', () => {
    this.OR([
      { ALT: () => this.CONSUME(t.Identifier) },
      { ALT: () => this.CONSUME(t.StringLit) },
      { ALT: () => this.CONSUME(t.UnterminatedString) },
      { ALT: () => this.CONSUME(t.StatusLit) },
      { ALT: () => this.CONSUME(t.RegexLit) },
      { ALT: () => this.CONSUME(t.EmailLit) },
      { ALT: () => this.CONSUME(t.RateLit) },
      { ALT: () => this.CONSUME(t.DomainLit) },
      { ALT: () => this.CONSUME(t.PathLit) },
      { ALT: () => this.CONSUME(t.FactorLit) },
      { ALT: () => this.CONSUME(t.NumberLit) },
      { ALT: () => this.CONSUME(t.Colon) },
      {
        // A list may continue on the next line after a comma.
        ALT: () => {
          this.CONSUME(t.Comma);
          this.MANY(() => this.CONSUME2(t.Newline));
        },
      },
    ]);
  });
}

/** The one parser instance; chevrotain parsers are reset by assigning `input`. */
export const cstParser = new PolicyCstParser();

/** Parse tokens into a CST. Never throws on bad input: errors come back in `errors`. */
export function tokensToCst(tokens: IToken[]): { cst: CstNode; errors: typeof cstParser.errors } {
  cstParser.input = tokens;
  const cst = cstParser.file();
  return { cst, errors: [...cstParser.errors] };
}

export { EOF };
