/** A policy repository for hot-reload tests: a bare repository, a clone to push from, and a policy whose rate a push changes. */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * A policy whose provider `example` (`domain`, default example.com) sends at `rate`; with
 * `withDefault` false, for adding to a set that has its own `default`.
 */
export const ratePolicy = (rate: string, note = '', { withDefault = true, domain = 'example.com' } = {}) => `policy reload version 1
${note ? `# ${note}\n` : ''}${withDefault ? '\ndefault {\n  connections 10\n}\n' : ''}
provider example {
  match domain ${domain}
  rate ${rate}
  connections 10
}

test "example.com routes to the example provider" {
  deliver to someone@${domain}
  expect route provider:example
}
`;

export function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, { cwd, encoding: 'utf8', env: { ...process.env, GIT_AUTHOR_NAME: 'Dee Liverability', GIT_AUTHOR_EMAIL: 'dee@shop.example', GIT_COMMITTER_NAME: 'Dee Liverability', GIT_COMMITTER_EMAIL: 'dee@shop.example' } });
}

/** A bare repository with one commit of `files`, and a clone to push from. */
export function policyRepo(dir: string, files: Record<string, string>): { bare: string; work: string; push: (files: Record<string, string>, message: string) => { commit: string; pushedAt: number } } {
  const bare = path.join(dir, 'policies.git');
  const work = path.join(dir, 'work');
  git(dir, 'init', '--quiet', '--bare', '--initial-branch=main', bare);
  git(dir, 'clone', '--quiet', bare, work);
  git(work, 'checkout', '--quiet', '-b', 'main');
  const push = (changed: Record<string, string>, message: string) => {
    for (const [name, text] of Object.entries(changed)) writeFileSync(path.join(work, name), text);
    git(work, 'add', '-A');
    git(work, 'commit', '--quiet', '-m', message);
    git(work, 'push', '--quiet', 'origin', 'main');
    return { commit: git(work, 'rev-parse', 'HEAD').trim(), pushedAt: Date.now() };
  };
  push(files, 'first version');
  return { bare, work, push };
}
