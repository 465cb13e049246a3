/** Delivery's pieces on their own: routes and bounces. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bounceFor, noBounceReason, statusOf } from '../host/delivery/bounce.js';
import { Routes } from '../host/delivery/routes.js';
import { configFrom } from '../host/config/config.js';
import type { SpoolEnvelope } from '../host/spool/spool.js';

describe('routes', () => {
  it('send each recipient to its domain\'s route (any case), else the next hop; equal settings share a pool', () => {
    const hop = (host: string) => ({ host, starttls: 'off' });
    const c = configFrom({ delivery: { nextHop: hop('mx.default'), routes: { 'A.example': hop('mx.a'), 'b.example': hop('mx.a'), 'c.example': hop('mx.c') } } }, 'x');
    const r = new Routes(c.delivery, 'me.example');
    try {
      const groups = [...r.group(['u@a.example', 'v@B.EXAMPLE', 'w@c.example', 'x@else.example', 'postmaster'])].map(([h, rcpts]) => [h?.name ?? null, rcpts]);
      assert.deepEqual(groups, [
        ['mx.a:25', ['u@a.example', 'v@B.EXAMPLE']],
        ['mx.c:25', ['w@c.example']],
        ['mx.default:25', ['x@else.example', 'postmaster']],
      ]);
    } finally {
      r.close();
    }
  });

  it('without a next hop, unrouted recipients are delivered locally (null)', () => {
    const r = new Routes(configFrom({ delivery: { routes: { 'a.example': { host: 'mx.a' } } } }, 'x').delivery, 'me');
    try {
      assert.equal(r.hopFor('u@other.example'), null);
      assert.equal(r.hopFor('u@a.example')?.name, 'mx.a:25');
    } finally {
      r.close();
    }
  });
});

describe('bounces', () => {
  const original: SpoolEnvelope = {
    id: 'ORIG1', receivedAt: '2026-11-22T10:00:00.000Z', client: { ip: '192.0.2.1', port: 1234, helo: 'c.example', ptr: null, user: null },
    mailFrom: 'sender@example.org', rcptTo: ['a@x.example', 'b@x.example'],
  };
  const message = Buffer.from('Subject: hello\r\nMessage-ID: <m1@example.org>\r\n\r\nsecret body\r\n');

  it('are RFC 3464 reports from <> to the sender, with the original header and not its body', () => {
    const b = bounceFor({ hostname: 'mx.example', original, message, failures: [{ rcpt: 'a@x.example', code: 550, text: '550 5.1.1 No such user', remote: 'mx.x.example:25' }], reason: 'refused by the next hop', now: new Date('2026-11-22T11:00:00Z') });
    assert.equal(b.envelope.mailFrom, '');
    assert.deepEqual(b.envelope.rcptTo, ['sender@example.org']);
    const text = b.message.toString();
    assert.match(text, /^From: Mail Delivery System <MAILER-DAEMON@mx\.example>\r\nTo: <sender@example\.org>\r\nSubject: Undelivered Mail Returned to Sender\r\n/);
    assert.match(text, /\r\nAuto-Submitted: auto-replied\r\n/);
    assert.match(text, /\r\nReporting-MTA: dns; mx\.example\r\nX-Portcullis-Queue-ID: ORIG1\r\nArrival-Date: Sun, 22 Nov 2026 10:00:00 \+0000\r\n\r\nFinal-Recipient: rfc822; a@x\.example\r\nAction: failed\r\nStatus: 5\.1\.1\r\nRemote-MTA: dns; mx\.x\.example\r\nDiagnostic-Code: smtp; 550 5\.1\.1 No such user\r\n/);
    assert.match(text, /Content-Type: text\/rfc822-headers\r\n\r\nSubject: hello\r\nMessage-ID: <m1@example\.org>\r\n/);
    assert.doesNotMatch(text, /secret body/);
    assert.doesNotMatch(text, /[^\r]\n/, 'CRLF line ends only');
  });

  it('are never sent to the null sender nor against NOTIFY; the status comes from the reply or its class', () => {
    assert.equal(noBounceReason({ ...original, mailFrom: '' }, 'a@x.example'), 'the sender is <> (RFC 5321 §4.5.5)');
    assert.equal(noBounceReason(original, 'a@x.example'), null);
    const dsn = { notify: { 'a@x.example': 'NEVER', 'b@x.example': 'DELAY', 'c@x.example': 'SUCCESS,FAILURE' } };
    assert.equal(noBounceReason({ ...original, dsn }, 'a@x.example'), 'the client asked NOTIFY=NEVER (RFC 3461 §4.1)');
    assert.equal(noBounceReason({ ...original, dsn }, 'b@x.example'), 'the client asked NOTIFY=DELAY (RFC 3461 §4.1)');
    assert.equal(noBounceReason({ ...original, dsn }, 'c@x.example'), null);
    assert.equal(statusOf({ rcpt: 'a', code: 552, text: '552 5.2.2 Over quota' }, '4.4.7'), '5.2.2');
    assert.equal(statusOf({ rcpt: 'a', code: 554, text: '554 Go away' }, '4.4.7'), '5.0.0');
    assert.equal(statusOf({ rcpt: 'a', code: 0, text: 'ECONNREFUSED' }, '4.4.7'), '4.4.7');
  });
});
