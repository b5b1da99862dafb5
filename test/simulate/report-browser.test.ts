/**
 * The HTML report of `petrel simulate` opened in headless Chromium (Debian's, driven by
 * playwright-core): a real campaign through the CLI (shipped Google and Yahoo rules, a
 * source that warms up) writes the page; the browser must draw every chart (each uPlot
 * canvas non-blank), log no console error and throw nothing, and ask the network for
 * nothing (every request is refused and counted). A screenshot is saved in the test's
 * temp directory.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../cli/main.ts';
import { ROOT } from '../helpers.ts';

const CHROMIUM = '/usr/bin/chromium';
const SENDERS = `policy senders version 1
use stdlib/warmup

source warm1 {
  address 192.0.2.10
  ehlo mta1.example.com
}

source cold1 {
  address 192.0.2.11
  ehlo mta2.example.com
  warmup conservative-30d since 2026-01-01
}

pool bulk {
  warm1, cold1
}

tenant shop {
  pool bulk
}
`;

let dir = '';
let context: BrowserContext | undefined;
beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'petrel-report-browser-'));
  // A fresh user-data-dir (playwright takes it as the persistent context's directory).
  context = await chromium.launchPersistentContext(path.join(dir, 'profile'), { executablePath: CHROMIUM, args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'], viewport: { width: 1200, height: 900 } });
}, 60_000);
afterAll(async () => {
  await context?.close();
  // The screenshot stays for a person to look at when PETREL_KEEP_SCREENSHOT is set.
  if (!process.env.PETREL_KEEP_SCREENSHOT) rmSync(dir, { recursive: true, force: true });
});

describe('the HTML report in Chromium', () => {
  it('draws every chart from the inlined uPlot, with no console error and no network request', async () => {
    expect(existsSync(CHROMIUM), `${CHROMIUM} (Debian's chromium; test/global-setup.ts installs it)`).toBe(true);
    writeFileSync(path.join(dir, 'senders.policy'), SENDERS);
    writeFileSync(path.join(dir, 'campaign.json'), JSON.stringify({ format: 1, name: 'browser check', start: '2026-01-05T00:00:00Z', streams: [{ count: 1500, provider: 'google', tenant: 'shop', overSeconds: 7200 }, { count: 800, provider: 'yahoo', tenant: 'shop', overSeconds: 7200 }], warmup: { cold1: { ageDays: 2 } } }));
    const out = path.join(dir, 'report.html');
    const err: string[] = [];
    const code = await main(['simulate', path.join(ROOT, 'policies/google.policy'), path.join(ROOT, 'policies/yahoo.policy'), path.join(ROOT, 'stdlib'), path.join(dir, 'senders.policy'), '--campaign', path.join(dir, 'campaign.json'), '--format', 'html', '--out', out], { out: () => {}, err: (t) => err.push(t), cwd: ROOT });
    expect(code, err.join('')).toBe(0);

    const page = await context!.newPage();
    const problems: string[] = [];
    const requests: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    await page.route('**/*', (route) => {
      const url = route.request().url();
      if (url.startsWith('file:')) return route.continue();
      requests.push(url);
      return route.abort();
    });
    await page.goto(pathToFileURL(out).href);
    await page.waitForFunction(() => document.body.getAttribute('data-rendered') !== null, undefined, { timeout: 20_000 });
    // Each canvas: drawn (some pixels not transparent and not all one colour).
    const canvases = await page.evaluate(() =>
      [...document.querySelectorAll('canvas')].map((c) => {
        const ctx = c.getContext('2d')!;
        const data = ctx.getImageData(0, 0, c.width, c.height).data;
        const colours = new Set<number>();
        let painted = 0;
        for (let i = 0; i < data.length; i += 4 * 7) {
          if (data[i + 3]! > 0) painted++;
          colours.add((data[i]! << 16) | (data[i + 1]! << 8) | data[i + 2]!);
        }
        return { width: c.width, height: c.height, painted, colours: colours.size };
      }),
    );
    const titles = await page.$$eval('.u-title', (els) => els.map((e) => e.textContent ?? ''));
    await page.screenshot({ path: path.join(dir, 'report.png'), fullPage: true });
    await page.close();

    expect(problems).toEqual([]);
    expect(requests).toEqual([]);
    // Google, yahoo, attempts per source, and cold1's ramp towards each provider.
    expect(titles).toEqual(expect.arrayContaining(['google: delivered, deferred, blocked, bounced', 'yahoo: delivered, deferred, blocked, bounced', 'attempts per source', 'cold1 → provider:google: the warmup ramp against sends per day']));
    expect(canvases.length).toBe(titles.length);
    for (const c of canvases) {
      expect(c.width).toBeGreaterThan(100);
      expect(c.painted).toBeGreaterThan(50);
      expect(c.colours).toBeGreaterThan(2);
    }
    console.info(`report in Chromium: ${canvases.length} charts drawn (${titles.join('; ')}); screenshot ${path.join(dir, 'report.png')}`);
  }, 120_000);
});
