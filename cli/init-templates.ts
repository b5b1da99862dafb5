/**
 * The texts `petrel init` writes besides the policy files: the CI workflow, the README,
 * `.gitignore` and `package.json`. Data only; cli/init.ts decides where they go.
 */

/**
 * GitHub Actions: format, check and test on every pull request and push to main, with
 * problems and failing expectations as annotations on the pull request's lines, the
 * effective change of a pull request and its effect on the sample campaign
 * (`petrel diff --simulate`) in its job summary, and the JUnit report and SARIF log kept.
 * Every `npx petrel` line here is run by test/cli/init.test.ts against a fresh scaffold,
 * so a scaffold's CI passes on day one.
 */
export const WORKFLOW = `name: petrel
on:
  pull_request:
  push:
    branches: [main]

permissions:
  contents: read
  security-events: write # upload-sarif: problems in the code scanning view

jobs:
  policies:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          fetch-depth: 0 # petrel diff reads the pull request's base branch
      - uses: actions/setup-node@v4
        with:
          node-version: 20
      - run: npm install --no-audit --no-fund

      - name: petrel fmt
        run: npx petrel fmt --check policies

      # Problems become annotations on the pull request's files.
      - name: petrel check
        if: always()
        run: npx petrel check --format github policies

      # Failing expectations become annotations at their \`expect\` lines; exit 3 fails the job.
      - name: petrel test
        if: always()
        run: npx petrel test --format github policies

      # What the pull request changes, per destination, and what that does to the sample
      # campaign (simulated on the base and on the pull request: the change in outcomes per
      # provider), in the job summary. Exit 1 means "there are changes", not a failure;
      # policy or campaign errors (3) fail the step.
      - name: petrel diff
        if: always() && github.event_name == 'pull_request'
        run: npx petrel diff --git . origin/\${{ github.base_ref }} HEAD --path policies --simulate simulation/campaign.json --format markdown >> "$GITHUB_STEP_SUMMARY" || test $? -eq 1

      # A sample campaign through the policies on a virtual clock, against the shipped
      # provider models (docs/simulate.md): the report, one HTML page, is kept below.
      - name: petrel simulate
        if: always()
        run: npx petrel simulate policies --campaign simulation/campaign.json --format html > petrel-simulation.html

      # Reports, kept whatever happened above (the steps above already failed the job).
      - name: reports
        if: always()
        run: |
          npx petrel test --format junit policies > petrel-tests.xml || true
          npx petrel check --format sarif policies > petrel.sarif || true
      - uses: actions/upload-artifact@v4
        if: always()
        with:
          name: petrel-reports
          path: |
            petrel-tests.xml
            petrel.sarif
      - uses: actions/upload-artifact@v4
        if: always()
        with:
          name: petrel-simulation
          path: petrel-simulation.html
      - uses: github/codeql-action/upload-sarif@v3
        if: always()
        # Code scanning needs GitHub Advanced Security on private repositories.
        continue-on-error: true
        with:
          sarif_file: petrel.sarif
          category: petrel
`;

/**
 * The sample campaign the workflow simulates (`simulation/campaign.json`): 20 000 messages
 * over two hours to a mix of the large providers' domains and the long tail, from the
 * policies' sources (the default one until the policies define some). Format in
 * docs/simulate.md.
 */
export const SAMPLE_CAMPAIGN = `${JSON.stringify(
  {
    format: 1,
    name: 'sample: 20 000 messages over two hours',
    start: '2026-01-05T08:00:00Z',
    streams: [{ name: 'newsletter', count: 20000, domains: { 'gmail.com': 40, 'yahoo.com': 20, 'outlook.com': 20, 'icloud.com': 10, 'example.org': 10 }, overSeconds: 7200 }],
  },
  null,
  2,
)}\n`;

export const GITIGNORE = `# petrel run: spool, accounting, policy versions
var/
# petrel build --out build
build/
node_modules/
`;

/** The repository's README; `providers` are the shipped files copied into policies/. */
export function readme(name: string, providers: readonly string[]): string {
  const copied = providers.length > 0 ? `, and copies of Petrel's shipped provider policies (${providers.join(', ')})` : '';
  return `# ${name}

Delivery policies for [Petrel](https://github.com/petrel/petrel): how fast to send to each
mailbox provider, how to retry, and what each SMTP reply means. \`policies/\` holds the
default for every destination${copied}. They are yours: edit them, add providers of your
own, and keep each rule's \`example\` and \`test\` blocks with it.

\`use stdlib/…\` (bounce categories, retry curves, warmup ramps) reads Petrel's standard
library from the installed \`petrel\` package, so it is upgraded with Petrel.

\`\`\`sh
npm install                          # installs the petrel version package.json names
npx petrel check policies            # every check; exit 3 on errors
npx petrel test policies             # run the test blocks against the compiled artifact
npx petrel fmt --write policies      # canonical formatting (CI runs fmt --check)
npx petrel build policies --out build
npx petrel run                       # accept mail on 127.0.0.1:2525 and deliver it
\`\`\`

CI (\`.github/workflows/petrel.yml\`) runs fmt, check and test on every pull request and
puts problems and failing tests on the pull request's lines as annotations. On a pull
request it also writes what the change does, per destination, and to the sample campaign
in \`simulation/campaign.json\` (simulated before and after), into the job summary
(\`npx petrel diff --git . origin/main HEAD --path policies --simulate simulation/campaign.json\`
shows the same locally).
`;
}

/** A new repository's package.json: `petrel` at exactly the version that wrote it. */
export function packageJson(name: string, petrelVersion: string): Record<string, unknown> {
  return {
    name,
    version: '0.0.0',
    private: true,
    description: 'Delivery policies for Petrel',
    scripts: SCRIPTS,
    dependencies: { petrel: petrelVersion },
  };
}

/** npm scripts the scaffold adds (never replacing one of the same name). */
export const SCRIPTS: Readonly<Record<string, string>> = {
  check: 'petrel check policies',
  test: 'petrel test policies',
  fmt: 'petrel fmt --write policies',
  build: 'petrel build policies --out build',
};
