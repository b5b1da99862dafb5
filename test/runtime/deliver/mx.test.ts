/** MX resolution against a real DNS server on loopback. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMxResolver } from '../../../runtime/deliver/mx.ts';
import { startDnsServer, type DnsServer } from '../fixtures/dns-server.ts';

let dns: DnsServer;
beforeAll(async () => {
  dns = await startDnsServer({
    'multi.test': {
      MX: [
        { preference: 20, exchange: 'backup.multi.test' },
        { preference: 10, exchange: 'mx-a.multi.test' },
        { preference: 10, exchange: 'mx-b.multi.test' },
      ],
    },
    'implicit.test': { A: ['127.0.0.9'] },
    'nullmx.test': { MX: [{ preference: 0, exchange: '.' }] },
    'noaddress.test': {},
    'broken.test': { rcode: 'SERVFAIL' },
    'flaky-a.test': { failTypes: ['A', 'AAAA'] },
    'dots.test': { MX: [{ preference: 0, exchange: '.' }, { preference: 10, exchange: '.' }] },
  });
});
afterAll(() => dns.close());

const resolver = (extra = {}) => createMxResolver({ servers: [`127.0.0.1:${dns.port}`], timeoutMs: 500, ...extra });

describe('MX resolution', () => {
  it('orders hosts by preference and shuffles equal preferences', async () => {
    let up = 0;
    const first = await resolver({ random: () => (up += 0.1) }).resolve('multi.test');
    expect(first).toMatchObject({ ok: true, via: 'mx' });
    if (!first.ok) throw new Error('unreachable');
    expect(first.hosts.map((h) => h.preference)).toEqual([10, 10, 20]);
    expect(first.hosts.at(-1)).toEqual({ host: 'backup.multi.test', port: 25, preference: 20 });
    let down = 1;
    const flip = await resolver({ random: () => (down -= 0.1) }).resolve('multi.test');
    const order = (a: Awaited<ReturnType<ReturnType<typeof resolver>['resolve']>>) => (a.ok ? a.hosts.slice(0, 2).map((h) => h.host) : []);
    expect(order(first)).toEqual(['mx-a.multi.test', 'mx-b.multi.test']);
    expect(order(flip)).toEqual(['mx-b.multi.test', 'mx-a.multi.test']);
  });

  it('falls back to the domain itself when it has no MX but has an address', async () => {
    expect(await resolver().resolve('implicit.test')).toEqual({ ok: true, via: 'implicit', hosts: [{ host: 'implicit.test', port: 25, preference: 0 }] });
  });

  it('treats a null MX, no such domain, and no records at all as permanent', async () => {
    expect(await resolver().resolve('nullmx.test')).toMatchObject({ ok: false, permanent: true, code: 'NULLMX' });
    expect(await resolver().resolve('nosuch.test')).toMatchObject({ ok: false, permanent: true, code: 'ENOTFOUND' });
    expect(await resolver().resolve('noaddress.test')).toMatchObject({ ok: false, permanent: true, code: 'NOMX' });
  });

  it('treats a server failure as temporary, also when the implicit-MX address lookup fails', async () => {
    expect(await resolver().resolve('broken.test')).toMatchObject({ ok: false, permanent: false });
    expect(await resolver().resolve('flaky-a.test')).toMatchObject({ ok: false, permanent: false });
  });

  it('treats MX records that are all `.` as a null MX', async () => {
    expect(await resolver().resolve('dots.test')).toMatchObject({ ok: false, permanent: true, code: 'NULLMX' });
  });

  it('caches answers for the TTL, and shares one query among concurrent lookups', async () => {
    let now = 1_000;
    const r = resolver({ clock: () => now, ttlMs: 60_000 });
    const before = dns.queries.filter((q) => q === 'MX multi.test').length;
    await Promise.all([r.resolve('multi.test'), r.resolve('MULTI.test.'), r.resolve('multi.test')]);
    expect(dns.queries.filter((q) => q === 'MX multi.test').length - before).toBe(1);
    now += 59_000;
    await r.resolve('multi.test');
    expect(dns.queries.filter((q) => q === 'MX multi.test').length - before).toBe(1);
    now += 2_000;
    await r.resolve('multi.test');
    expect(dns.queries.filter((q) => q === 'MX multi.test').length - before).toBe(2);
  });

  it('uses the override map before DNS, with `*` for every domain', async () => {
    const r = resolver({ override: { 'special.test': '127.0.0.1:2601', '*': '127.0.0.1:2600' } });
    expect(await r.resolve('Special.test')).toEqual({ ok: true, via: 'override', hosts: [{ host: '127.0.0.1', port: 2601, preference: 0 }] });
    expect(await r.resolve('anything.example')).toEqual({ ok: true, via: 'override', hosts: [{ host: '127.0.0.1', port: 2600, preference: 0 }] });
    expect(dns.queries.some((q) => q.endsWith('anything.example'))).toBe(false);
  });
});
