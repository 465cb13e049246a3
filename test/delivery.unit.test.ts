/**
 * Delivery's pieces on their own: routes, bounces, the envelope and headers built from an
 * accepted transaction, and the outcomes with the reply each one gets.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bounceFor, noBounceReason, statusOf } from '../host/delivery/bounce.js';
import type { DeliveryOutcome } from '../host/delivery/outcome.js';
import { nextHopAnswer } from '../host/delivery/relay.js';
import { Routes } from '../host/delivery/routes.js';
import { addedHeaders, envelopeOf, type AcceptedTransaction } from '../host/delivery/transaction.js';
import { configFrom } from '../host/config/config.js';
import { outcomeReply } from '../host/smtp/outcome-reply.js';
import { formatReply } from '../host/smtp/reply.js';
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

describe('accepted transactions', () => {
  const t: AcceptedTransaction = {
    sessionId: 'S1',
    client: { ip: '192.0.2.1', port: 1234, helo: 'c.example', ptr: 'ptr.example', user: null },
    protocol: 'ESMTPS',
    mailFrom: { address: 'a@example.org', args: { RET: 'hdrs', ENVID: 'E1', SIZE: '10' } },
    rcptTo: [{ address: 'u@x.example', args: { NOTIFY: 'failure,delay', ORCPT: 'rfc822;u@x.example' } }, { address: 'v@x.example', args: {} }],
    disposition: { action: 'deliver', rule: null, reason: null },
    headers: [['X-Spam', 'no'], ['X-Checked', 'clean']],
    message: Buffer.from('Subject: hi\r\n\r\nbody\r\n'),
  };
  const at = new Date('2026-01-02T03:04:05.678Z');

  it('become the spool envelope: client, sender, recipients and the DSN parameters the client gave', () => {
    assert.equal(JSON.stringify(envelopeOf(t, 'ID1', at)), JSON.stringify({
      id: 'ID1', receivedAt: '2026-01-02T03:04:05.678Z',
      client: { ip: '192.0.2.1', port: 1234, helo: 'c.example', ptr: 'ptr.example', user: null },
      mailFrom: 'a@example.org', rcptTo: ['u@x.example', 'v@x.example'],
      dsn: { ret: 'HDRS', envid: 'E1', notify: { 'u@x.example': 'FAILURE,DELAY' }, orcpt: { 'u@x.example': 'rfc822;u@x.example' } },
    }));
    assert.equal(JSON.stringify(envelopeOf({ ...t, mailFrom: { address: '', args: {} }, rcptTo: [{ address: 'v@x.example', args: {} }] }, 'ID2', at)),
      '{"id":"ID2","receivedAt":"2026-01-02T03:04:05.678Z","client":{"ip":"192.0.2.1","port":1234,"helo":"c.example","ptr":"ptr.example","user":null},"mailFrom":"","rcptTo":["v@x.example"]}');
  });

  it('redirected, carry the new recipient, the rule, and the original recipients; no per-recipient DSN', () => {
    const env = envelopeOf({ ...t, disposition: { action: 'redirect', rule: 'move', reason: 'moved', address: 'w@y.example' } }, 'ID1', at);
    assert.deepEqual(env.rcptTo, ['w@y.example']);
    assert.equal(JSON.stringify(env.disposition), '{"action":"redirect","rule":"move","reason":"moved","originalRcptTo":["u@x.example","v@x.example"]}');
    assert.deepEqual(env.dsn, { ret: 'HDRS', envid: 'E1' });
    const q = envelopeOf({ ...t, disposition: { action: 'quarantine', rule: 'spam', reason: 'score' } }, 'ID1', at);
    assert.deepEqual(q.rcptTo, ['u@x.example', 'v@x.example']);
    assert.deepEqual(q.disposition, { action: 'quarantine', rule: 'spam', reason: 'score', originalRcptTo: ['u@x.example', 'v@x.example'] });
  });

  it('get our Received (for <rcpt> with one recipient only), then the rules\' headers', () => {
    assert.equal(addedHeaders(t, 'ID1', 'mx.example', at),
      'Received: from c.example (ptr.example [192.0.2.1])\r\n\tby mx.example (Portcullis) with ESMTPS id ID1;\r\n\tFri, 02 Jan 2026 03:04:05 +0000\r\n' +
      'X-Spam: no\r\nX-Checked: clean\r\n');
    const one = { ...t, client: { ...t.client, helo: null, ptr: null }, rcptTo: [t.rcptTo[0]!], headers: [] };
    assert.equal(addedHeaders(one, 'ID1', 'mx.example', at),
      'Received: from unknown ([192.0.2.1])\r\n\tby mx.example (Portcullis) with ESMTPS id ID1\r\n\tfor <u@x.example>;\r\n\tFri, 02 Jan 2026 03:04:05 +0000\r\n');
    assert.equal(addedHeaders(t, 'ID1', null, at), 'X-Spam: no\r\nX-Checked: clean\r\n', 'no Received when "received": false');
  });
});

describe('delivery outcomes', () => {
  // Keyed by kind, so a new kind does not compile until it has its reply here.
  const cases: { [K in DeliveryOutcome['kind']]: [Extract<DeliveryOutcome, { kind: K }>, string][] } = {
    queued: [[{ kind: 'queued', id: 'Q1' }, '250 2.0.0 Ok: queued as Q1']],
    quarantined: [[{ kind: 'quarantined', id: 'Q1' }, '250 2.0.0 Ok: queued as Q1']],
    discarded: [[{ kind: 'discarded', id: 'Q1' }, '250 2.0.0 Ok: queued as Q1']],
    relayed: [[{ kind: 'relayed', id: 'Q1', response: '250 2.0.0 Ok: queued as X9' }, '250 2.0.0 Ok: relayed as Q1 (next hop: 250 2.0.0 Ok: queued as X9)']],
    'relayed-in-part': [[{ kind: 'relayed-in-part', id: 'Q1', accepted: 1, recipients: 3 }, '250 2.0.0 Ok: relayed as Q1 (next hop: 1 of 3 recipients accepted, the rest queued or bounced)']],
    refused: [
      [{ kind: 'refused', nextHop: 'mx:25', code: 550, status: '5.1.1', text: 'No such user' }, '550 5.1.1 Next hop mx:25: No such user'],
      [{ kind: 'refused', nextHop: 'mx:25', code: 554, status: null, text: 'Go away' }, '554 5.0.0 Next hop mx:25: Go away'],
      [{ kind: 'refused', nextHop: 'mx:25', code: 452, status: '4.2.2', text: 'Mailbox full' }, '452 4.2.2 Next hop mx:25: Mailbox full'],
      [{ kind: 'refused', nextHop: 'mx:25', code: 421, status: '4.3.2', text: 'Shutting down' }, '451 4.3.2 Next hop mx:25: Shutting down'],
      [{ kind: 'refused', nextHop: 'mx:25', code: 450, status: '5.7.1', text: 'class mismatch' }, '450 4.0.0 Next hop mx:25: class mismatch'],
      [{ kind: 'refused', nextHop: 'mx:25', code: 354, status: null, text: 'odd' }, '451 4.0.0 Next hop mx:25: odd'],
      [{ kind: 'refused', nextHop: null, code: 550, status: '5.1.1', text: 'No such user' }, '550 5.1.1 Next hop: No such user'],
    ],
    'next-hop-down': [[{ kind: 'next-hop-down' }, '451 4.4.1 Next hop not reachable, please try again later (session S1)']],
    'spool-full': [[{ kind: 'spool-full' }, '452 4.3.1 Insufficient system storage, please try again later (session S1)']],
  };
  for (const [kind, list] of Object.entries(cases)) {
    it(`${kind}: each is answered with its exact reply line`, () => {
      for (const [o, line] of list) assert.equal(formatReply(outcomeReply(o, 'S1')), line, JSON.stringify(o));
    });
  }

  it('a next hop\'s refusal is split into code, enhanced status and one line of text; no reply at all is a next hop that is down', () => {
    const answer = (code: number, text: string, remote?: string) => nextHopAnswer({ rcpt: 'u@x', status: 'refused', code, text, ...(remote ? { remote } : {}) });
    assert.deepEqual(answer(550, '550 5.1.1 No such user', 'mx:25'), { kind: 'refused', nextHop: 'mx:25', code: 550, status: '5.1.1', text: 'No such user' });
    assert.deepEqual(answer(554, '554 Go away', 'mx:25'), { kind: 'refused', nextHop: 'mx:25', code: 554, status: null, text: 'Go away' });
    assert.deepEqual(answer(452, '452 4.2.2 Mailbox full'), { kind: 'refused', nextHop: null, code: 452, status: '4.2.2', text: 'Mailbox full' });
    assert.equal((answer(550, `550 5.7.1 ${'x'.repeat(250)}`) as { text: string }).text, `${'x'.repeat(197)}...`, 'at most 200 characters');
    assert.deepEqual(answer(0, 'ECONNREFUSED: connect failed', 'mx:25'), { kind: 'next-hop-down' });
  });
});
