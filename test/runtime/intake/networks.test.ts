/** Client networks for relaying: CIDR blocks and single addresses, IPv4-mapped clients, and bad entries named. */
import { describe, expect, it } from 'vitest';
import { DEFAULT_CLIENT_NETWORKS, networkMatcher } from '../../../runtime/intake/submission-smtp.ts';

describe('networkMatcher', () => {
  it('matches CIDR blocks and single addresses, IPv4 and IPv6', () => {
    const inside = networkMatcher(['10.20.0.0/16', '192.0.2.7', '2001:db8::/32']);
    expect(inside('10.20.255.1')).toBe(true);
    expect(inside('10.21.0.1')).toBe(false);
    expect(inside('192.0.2.7')).toBe(true);
    expect(inside('192.0.2.70')).toBe(false);
    expect(inside('2001:db8:1::5')).toBe(true);
    expect(inside('2001:db9::5')).toBe(false);
    expect(inside(undefined)).toBe(false);
    expect(inside('not an address')).toBe(false);
  });

  it('matches IPv4-mapped IPv6 clients as IPv4, and defaults to loopback only', () => {
    const loopback = networkMatcher(DEFAULT_CLIENT_NETWORKS);
    expect(loopback('127.0.0.1')).toBe(true);
    expect(loopback('127.1.2.3')).toBe(true);
    expect(loopback('::ffff:127.0.0.1')).toBe(true);
    expect(loopback('::1')).toBe(true);
    expect(loopback('::ffff:10.0.0.1')).toBe(false);
    expect(loopback('128.0.0.1')).toBe(false);
    // A prefix match would have let 127.0.0.10 through a single-address entry.
    expect(networkMatcher(['127.0.0.1'])('127.0.0.10')).toBe(false);
  });

  it('names an entry that is neither an address nor a CIDR block', () => {
    expect(() => networkMatcher(['127.'])).toThrow('client network `127.` is neither an address nor a CIDR block');
    expect(() => networkMatcher(['10.0.0.0/33'])).toThrow('`10.0.0.0/33`');
    expect(() => networkMatcher(['10.0.0.0/8/1'])).toThrow('`10.0.0.0/8/1`');
    expect(() => networkMatcher(['::1/129'])).toThrow('`::1/129`');
  });
});
