/**
 * header-conformance through the public harness: the required fields, Sender for several
 * From mailboxes, RFC 5322's date-time grammar with and without the obsolete forms, the
 * reject and tag actions, score mode, and authenticated clients.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { loadRule, type Harness } from '../host/testing/harness.js';

const RULE = 'rules/header-conformance.ts';
const DATE = 'Tue, 1 Dec 2026 10:00:00 +0000';
const GOOD: [string, string][] = [['From', 'a@example.net'], ['Date', DATE], ['Message-ID', '<1@example.net>'], ['Subject', 'hi']];

/** The header fields with `changes` applied: a value replaces (or adds) the field, null removes it. */
function fields(changes: Record<string, string | null> = {}, extra: [string, string][] = []): [string, string][] {
  const kept = GOOD.filter(([n]) => !(n in changes)).concat(Object.entries(changes).filter((e): e is [string, string] => e[1] !== null));
  return [...kept, ...extra];
}

/** One harness per set of options, for the whole file. */
const harnesses = new Map<string, Promise<Harness>>();
after(async () => {
  for (const h of harnesses.values()) await (await h).close();
});

/** Sends one message through the rule; returns the reply (null: accepted) and the header it tagged, if any. */
async function verdict(options: Record<string, unknown>, headers: [string, string][], o: { auth?: boolean } = {}) {
  const key = JSON.stringify(options);
  if (!harnesses.has(key)) harnesses.set(key, loadRule(RULE, { options, config: { scores: { reject: 5 } } }));
  const h = await harnesses.get(key)!;
  const s = await h.connect({ ip: '192.0.2.60', helo: 'mx.example.net' });
  if (o.auth) await s.auth('alice');
  await s.mail('a@example.net');
  await s.rcpt(o.auth ? 'bob@example.org' : 'user@localhost');
  const m = await s.message({ headers, body: 'hello\n' });
  return { reply: m.reply, tag: m.accepted?.headers.find(([n]) => n === 'X-Header-Conformance')?.[1] ?? null, score: m.accepted?.headers.find(([n]) => n === 'X-Portcullis-Score')?.[1] ?? null };
}

describe('header-conformance', () => {
  it('accepts a message with Date, From and Message-ID, and refuses one without them: 554 5.6.0', async () => {
    assert.equal((await verdict({}, fields())).reply, null);
    assert.equal((await verdict({}, fields({ Date: null, 'Message-ID': null }))).reply, '554 5.6.0 Message refused: its header does not conform to RFC 5322 (no Date; no Message-ID)');
    assert.equal((await verdict({}, fields({ From: null }))).reply, '554 5.6.0 Message refused: its header does not conform to RFC 5322 (no From)');
  });

  it('checks only the checks it is given: no Message-ID passes without message-id', async () => {
    assert.equal((await verdict({ checks: ['date', 'from'] }, fields({ 'Message-ID': null }))).reply, null);
  });

  it('wants a Sender when From has several mailboxes (a comma inside quotes or a comment is not one)', async () => {
    const two = 'a@example.net, "Doe, John" <j@example.net>';
    assert.equal((await verdict({}, fields({ From: two }))).reply, '554 5.6.0 Message refused: its header does not conform to RFC 5322 (several From mailboxes and no Sender)');
    assert.equal((await verdict({}, fields({ From: two, Sender: 'a@example.net' }))).reply, null);
    assert.equal((await verdict({}, fields({ From: '"Doe, John (x@y)" <j@example.net> (at work, a@b)' }))).reply, null);
  });

  it('tag: accepts the message and names what failed in X-Header-Conformance', async () => {
    const v = await verdict({ action: 'tag' }, fields({ 'Message-ID': null, Date: 'yesterday' }));
    assert.deepEqual([v.reply, v.tag], [null, 'no Message-ID; Date not an RFC 5322 date']);
  });

  it('score mode: points under header-conformance instead of deciding', async () => {
    const v = await verdict({ score: 2 }, fields({ 'Message-ID': null }));
    assert.deepEqual(v, { reply: null, tag: null, score: '2 (header-conformance=2)' });
  });

  it('does not judge authenticated clients: their submission server adds Date and Message-ID (RFC 6409 §8)', async () => {
    assert.equal((await verdict({}, fields({ Date: null, 'Message-ID': null }), { auth: true })).reply, null);
  });

  // RFC 5322 §3.3, and §4.3's obsolete forms, which pass unless obsoleteDates is false.
  const dates: [string, 'strict' | 'obsolete' | 'never'][] = [
    ['Tue, 1 Dec 2026 10:00:00 +0000', 'strict'],
    ['1 Dec 2026 10:00 -0500', 'strict'],
    ['tue, 01 DEC 2026 23:59:60 +0100 (CET)', 'strict'],
    ['Tue, 1 Dec 26 10:00:00 +0000', 'obsolete'],
    ['Tue, 1 Dec 2026 10:00:00 GMT', 'obsolete'],
    ['1 Dec 2026 10:00:00 EST', 'obsolete'],
    ['1 Dec 2026 10:00:00 Z', 'obsolete'],
    ['Tue , 1 Dec 2026 10 : 00 : 00 +0000', 'obsolete'],
    ['Tue, 1 Dec 2026 (a comment) 10:00:00 +0000', 'obsolete'],
    ['2026-12-01T10:00:00Z', 'never'],
    ['Tue, 1 Dec 2026 24:00:00 +0000', 'never'],
    ['Tue, 1 Dez 2026 10:00:00 +0000', 'never'],
    ['Tue, 1 Dec 2026 10:00:00 +0060', 'never'],
    ['1 Dec 2026 10:00:00 J', 'never'],
    ['Tue, 1 Dec 2026 10:00:00 +0000 and more', 'never'],
  ];
  for (const [date, kind] of dates) {
    it(`date-syntax: "${date}" is ${kind === 'strict' ? 'a date' : kind === 'obsolete' ? 'an obsolete date: it passes unless obsoleteDates is false' : 'no date'}`, async () => {
      const tag = async (obsoleteDates: boolean) => (await verdict({ action: 'tag', checks: ['date-syntax'], obsoleteDates }, fields({ Date: date }))).tag;
      const bad = 'Date not an RFC 5322 date';
      assert.deepEqual([await tag(true), await tag(false)], kind === 'strict' ? [null, null] : kind === 'obsolete' ? [null, bad] : [bad, bad]);
    });
  }

  it('date-syntax reads Resent-Date and the date after the ";" of each Received; a Received with none is obsolete', async () => {
    const check = async (extra: [string, string][], obsoleteDates = true) => (await verdict({ action: 'tag', checks: ['date-syntax'], obsoleteDates }, fields({}, extra))).tag;
    const received = 'from mx.example.net (mx.example.net [192.0.2.1]) by mx.example.org with ESMTP id 1A2B; ';
    assert.equal(await check([['Received', received + DATE], ['Resent-Date', DATE]]), null);
    assert.equal(await check([['Received', received + 'Tue, 1 Dec 2026 10:00:00']]), 'Received date not an RFC 5322 date');
    assert.equal(await check([['Resent-Date', 'now']]), 'Resent-Date not an RFC 5322 date');
    assert.equal(await check([['Received', 'from mx.example.net by mx.example.org']]), null);
    assert.equal(await check([['Received', 'from mx.example.net by mx.example.org']], false), 'Received date not an RFC 5322 date');
  });
});
