// Owns: unit tests of lib/channel/subjects.ts beyond wildcard matching (covered in memory.test.ts):
// which subjects can be published to, and the cluster's point-to-point rule.
import { describe, expect, it } from 'vitest';
import { assertPublishSubject, clusterPointToPoint, hasWildcard } from '../../../lib/channel/subjects.ts';
import { InvalidOptionsError } from '../../../lib/errors.ts';

describe('assertPublishSubject', () => {
  it('accepts plain subjects, including tokens that merely contain * or >', () => {
    for (const ok of ['a', 'a.b', 'sessrep.c.node.n1', '_INBOX.n1.x.1', 'a*b.c>d', 'a-b_c.1'])
      expect(() => assertPublishSubject(ok), ok).not.toThrow();
  });

  it('refuses wildcards, empty tokens and whitespace with InvalidOptionsError', () => {
    for (const bad of ['*', '>', 'a.*', 'a.>', 'a.*.b', '', '.', 'a.', '.a', 'a..b', 'a b', 'a.\tb'])
      expect(() => assertPublishSubject(bad), JSON.stringify(bad)).toThrow(InvalidOptionsError);
    expect(() => assertPublishSubject('a.*')).toThrow(/wildcards/);
  });

  it('hasWildcard finds only whole-token wildcards', () => {
    expect(hasWildcard('a.*.c')).toBe(true);
    expect(hasWildcard('a.>')).toBe(true);
    expect(hasWildcard('a*.b>')).toBe(false);
  });
});

describe('clusterPointToPoint', () => {
  it('addresses reply inboxes and node subjects of the prefix to their node, everything else is a broadcast', () => {
    const route = clusterPointToPoint('app.sess');
    expect(route('_INBOX.n1.abc.7')).toBe('n1');
    expect(route('_INBOX.n1')).toBeUndefined();
    expect(route('app.sess.shop.node.n2')).toBe('n2');
    expect(route('app.sess.shop.delta')).toBeUndefined();
    expect(route('sessrep.shop.node.n2')).toBeUndefined();
    expect(route('app.sess.shop.node.n2.extra')).toBeUndefined();
    expect(clusterPointToPoint()('sessrep.shop.node.n3')).toBe('n3');
  });
});
