/**
 * Shipped policy files at another time scale, for tests that run a provider model scaled
 * the same way (test/runtime/run-campaign.e2e.test.ts, test/simulate/agreement.e2e.test.ts):
 * durations and rates in statements scaled, comments and examples untouched, test blocks
 * left out (their waits and expectations are in real time).
 */
const SECONDS: Record<string, number> = { s: 1, m: 60, min: 60, h: 3600, d: 86400, day: 86400 };

/**
 * A shipped policy file at time scale `scale`: durations (`1h`) and rates (`3600/h`) in its
 * statements scaled, comments and examples untouched, test blocks left out (their `wait`s
 * and expectations are in real time).
 */
export function scalePolicyText(text: string, scale: number): string {
  return text
    .replace(/^test "[^"\n]*" \{\n[\s\S]*?^\}\n?/gm, '')
    .split('\n')
    .map((line) => {
      const code = line.trimStart();
      if (code.startsWith('#') || code.startsWith('example ')) return line;
      return line
        .replace(/(?<![\w./"])(\d+)\/(s|min|h|day)\b/g, (_, n: string, unit: string) => `${Math.max(1, Math.round((Number(n) * 60) / (SECONDS[unit]! * scale)))}/min`)
        .replace(/(?<![\w./"])(\d+)(s|m|h|d)\b/g, (_, n: string, unit: string) => `${Math.max(1, Math.round(Number(n) * SECONDS[unit]! * scale))}s`);
    })
    .join('\n');
}
