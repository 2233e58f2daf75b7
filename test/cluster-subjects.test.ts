import { describe, expect, it } from 'vitest';
import { Subjects, nameOfToken, subjectToken } from '../server/src/cluster/subjects.js';

describe('cluster subjects', () => {
  it('escape every name into one token that reads back to it', () => {
    for (const name of ['branch-01', 'pipe-a.example.com:1234', 'a*b>c d', 'x%41', 'zürich', '', 'a.b.c']) {
      const token = subjectToken(name);
      expect(token).toMatch(/^(?:[A-Za-z0-9_-]|%[0-9A-F]{2})*$/);
      expect(nameOfToken(token)).toBe(name);
    }
    expect(subjectToken('pipe-a.example.com:1234')).toBe('pipe-a%2Eexample%2Ecom%3A1234');
  });

  it('refuse tokens no name gives', () => {
    for (const token of ['a.b', 'a*', '%4', '%zz', '%2e', 'a b']) expect(nameOfToken(token)).toBeUndefined();
  });

  it('keep every subject under the namespace, one token per name', () => {
    const s = new Subjects('restpipe');
    expect(s.presence).toBe('restpipe.presence');
    expect(s.linkOpen('a.b')).toBe('restpipe.inst.a%2Eb.link');
    expect(s.snapshot('a>b')).toBe('restpipe.inst.a%3Eb.snapshot');
    expect(s.linkData('i*', 'f00d')).toBe('restpipe.link.i%2A.f00d');
    expect(s.linkDataAll('i')).toBe('restpipe.link.i.*');
    expect(s.inboxPrefix('i.x')).toBe('restpipe._INBOX.i%2Ex');
  });
});
