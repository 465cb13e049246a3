/** Table-driven tests of the pure pieces: reply lines, verdict validation, overrides, networks, headers. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { domainOf, networkList, plainIp } from '../host/net.js';
import { applyAction } from '../host/pipeline/pipeline.js';
import { bodyOffset } from '../host/delivery/header.js';
import { parseHeaders } from '../host/smtp/message.js';
import { formatReply, verdictReply } from '../host/smtp/reply.js';
import { InvalidVerdict, parseGuestReply, validateEffects, validateVerdict } from '../host/sandbox/validate.js';
import { newMessageId } from '../host/spool/spool.js';
import { reversedIp } from '../host/dns/checker.js';
import { codeMatches } from '../rules/lib/dnsbl.js';
import { reject, tempfail } from '../sdk/index.js';

describe('reply lines', () => {
  it('derive the enhanced status class from the reply code (RFC 3463)', () => {
    assert.equal(formatReply(verdictReply(550, 'No', '1.1')), '550 5.1.1 No');
    assert.equal(formatReply(verdictReply(450, 'Later', '7.1')), '450 4.7.1 Later');
    assert.equal(formatReply(verdictReply(554, 'Policy')), '554 5.7.1 Policy');
    assert.equal(formatReply({ code: 220, status: null, text: 'ready' }), '220 ready');
  });
});

describe('verdict validation', () => {
  const bad: [string, unknown, RegExp][] = [
    ['a number', 42, /must be an object/],
    ['an array', [], /must be an object/],
    ['no action', {}, /unknown action undefined/],
    ['an unknown action', { action: 'allow' }, /unknown action "allow"/],
    ['a 2xx reject', { action: 'reject', code: 250, text: 'ok' }, /reject code must be one of 521, 550/],
    ['a 5xx tempfail', { action: 'tempfail', code: 550, text: 'x' }, /tempfail code must be one of 421, 450/],
    ['a fractional code', { action: 'reject', code: 550.5, text: 'x' }, /reject code must be one of/],
    ['CR/LF in the text', { action: 'reject', code: 550, text: 'a\r\n250 b' }, /not allowed/],
    ['8-bit text', { action: 'drop', text: 'caf\u00e9' }, /not allowed/],
    ['a bad status', { action: 'reject', code: 550, text: 'x', status: '5.7.1' }, /status contains/],
    ['a long text', { action: 'reject', code: 550, text: 'x'.repeat(401) }, /longer than 400/],
    ['a bad redirect', { action: 'redirect', address: 'not an address' }, /address contains/],
    ['a bad reason', { action: 'accept', reason: 'Has Spaces' }, /reason contains/],
  ];
  for (const [what, v, why] of bad) {
    it(`refuses ${what}`, () => assert.throws(() => validateVerdict(v), (e: Error) => e instanceof InvalidVerdict && why.test(e.message)));
  }

  it('copies only known fields, so nothing else reaches the host', () => {
    const v = validateVerdict(JSON.parse('{"action":"reject","code":550,"text":"x","__proto__":{"polluted":1},"extra":1}'));
    assert.deepEqual(v, { action: 'reject', code: 550, text: 'x' });
    assert.equal(Object.getPrototypeOf(v), Object.prototype);
  });

  it('accepts what the SDK constructors build', () => {
    assert.deepEqual(validateVerdict(reject(550, 'No', { status: '1.1', reason: 'no-user' })), { action: 'reject', code: 550, text: 'No', status: '1.1', reason: 'no-user' });
    assert.deepEqual(validateVerdict(tempfail()), { action: 'tempfail', code: 451, text: 'Try again later' });
  });

  it('checks effects: header names, values, blacklist and well-behaved TTLs', () => {
    assert.throws(() => validateEffects({ headers: [['Bad Name', 'x']] }), /header name contains/);
    assert.throws(() => validateEffects({ headers: [['X-A', 'a\r\nBcc: victim@example.org']] }), /not allowed/);
    assert.throws(() => validateEffects({ blacklist: { ttlSeconds: 0, reason: 'x' } }), /ttlSeconds must be/);
    assert.throws(() => validateEffects({ wellBehaved: { ttlSeconds: 31 * 86400 } }), /markWellBehaved ttlSeconds must be 1–2592000$/);
    assert.throws(() => validateEffects({ wellBehaved: { ttlSeconds: '3600' } }), /markWellBehaved ttlSeconds must be/);
    assert.deepEqual(validateEffects({ wellBehaved: { ttlSeconds: 86400, extra: 1 } }), { wellBehaved: { ttlSeconds: 86400 } });
    assert.deepEqual(validateEffects({ headers: [['X-A', 'caf\u00e9']], delayMs: 5 }), { headers: [['X-A', 'caf\u00e9']], delayMs: 5 });
  });

  it('reads the guest reply forms', () => {
    assert.deepEqual(parseGuestReply(''), { verdict: { action: 'next' }, effects: {} });
    assert.throws(() => parseGuestReply('!the handler returned a Promise'), /returned a Promise/);
  });
});

describe('action overrides', () => {
  it('shadow and enforce leave the verdict; quarantine and tempfail rewrite refusals', () => {
    const r = reject(554, 'Spam');
    assert.deepEqual(applyAction(r, 'enforce'), r);
    assert.deepEqual(applyAction(r, 'quarantine'), { action: 'quarantine' });
    assert.deepEqual(applyAction(r, 'tempfail'), { action: 'tempfail', code: 454, text: 'Spam' });
    assert.deepEqual(applyAction(tempfail(451, 'x'), 'tempfail'), tempfail(451, 'x'));
  });
});

describe('networks and domains', () => {
  it('match CIDR lists for IPv4, IPv6 and IPv4-mapped addresses', () => {
    const inList = networkList(['192.0.2.0/24', '2001:db8::/32', '127.0.0.1']);
    assert.equal(inList('192.0.2.77'), true);
    assert.equal(inList('::ffff:192.0.2.77'), true);
    assert.equal(inList('192.0.3.1'), false);
    assert.equal(inList('2001:db8:1::5'), true);
    assert.equal(inList('127.0.0.2'), false);
    assert.equal(inList('not-an-ip'), false);
    assert.equal(plainIp('::ffff:10.0.0.1'), '10.0.0.1');
  });

  it('takes the domain after the last @, lower-cased', () => {
    assert.equal(domainOf('"a@b"@Example.ORG'), 'example.org');
    assert.equal(domainOf('postmaster'), '');
  });
});

describe('message headers', () => {
  it('are unfolded and encoded words decoded, in order', () => {
    const msg = Buffer.from('Subject: =?UTF-8?B?SGVsbG8gd8O2cmxk?=\r\nX-Long: one\r\n two\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n\r\nbody\r\n');
    const off = bodyOffset(msg);
    assert.equal(msg.subarray(off).toString(), 'body\r\n');
    assert.deepEqual(parseHeaders(msg, off), [['Subject', 'Hello w\u00f6rld'], ['X-Long', 'one two'], ['Date', 'Sun, 22 Nov 2026 10:00:00 +0000']]);
  });

  it('a message without a blank line is all header', () => {
    const msg = Buffer.from('Subject: x\r\n');
    assert.equal(bodyOffset(msg), msg.length);
  });
});

describe('message ids', () => {
  it('are unique and sort in the order they were made', () => {
    const ids = Array.from({ length: 5000 }, () => newMessageId());
    assert.equal(new Set(ids).size, ids.length);
    assert.deepEqual([...ids].sort(), ids);
  });
});

describe('DNS list names and answer patterns', () => {
  it('reverses IPv4 by octets and IPv6 by nibbles (RFC 5782 §2.1, §2.4)', () => {
    assert.equal(reversedIp('192.0.2.99'), '99.2.0.192');
    assert.equal(reversedIp('2001:db8:1:2:3:4:567:89ab'), 'b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2');
    assert.equal(reversedIp('2001:db8::1'), '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2');
    assert.equal(reversedIp('not-an-ip'), null);
  });

  it('matches answers exactly or with postscreen octet ranges', () => {
    assert.ok(codeMatches('127.0.0.4', '127.0.0.[4..7]'));
    assert.ok(!codeMatches('127.0.0.8', '127.0.0.[4..7]'));
    assert.ok(codeMatches('127.0.10.3', '127.0.[0..255].[2..3]'));
    assert.ok(codeMatches('127.0.0.2', '127.0.0.2'));
    assert.ok(!codeMatches('127.0.0.2', '127.0.0.3'));
  });
});
