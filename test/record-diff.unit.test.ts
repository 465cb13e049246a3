/**
 * What a replay reports as changed: outcomes (refused, tempfailed, tagged, accepted), the
 * rule a change is counted for, the units (sessions, recipients, messages), and a record
 * line that is not a session; recorded facts standing in for DNS.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RecordedSession, RecordedStep } from '../sdk/index.js';
import { diffSession, outcomeOf, ReplaySummary } from '../host/record/diff.js';
import { RecordedFacts } from '../host/record/facts.js';
import { notARecord } from '../host/record/reader.js';
import type { ReplayedStep } from '../host/record/replay.js';

const T = Date.UTC(2026, 11, 1, 6, 0, 0);
const ok = { reply: null, rule: null };

function session(id: string, steps: RecordedStep[]): RecordedSession {
  return { v: 1, id, ruleSet: 1, client: { ip: '192.0.2.7', port: 40000, ptr: 'mx.example.org', localIp: '192.0.2.25', localPort: 25 }, blacklist: null, wellBehaved: false, dns: false, steps, facts: {} };
}

const message = (accepted: { disposition: 'deliver' | 'quarantine'; rule: string | null; headers: [string, string][] } | null, reply: string | null = null, rule: string | null = null): RecordedStep =>
  ({ cmd: 'message', t: T, head: 'Subject: x\r\n\r\n', body: null, size: 20, reply, rule, accepted, wire: reply ?? '250 2.0.0 Ok' });

const replayed = (reply: string | null, rule: string | null = null, accepted: ReplayedStep['accepted'] = null): ReplayedStep => ({ reached: true, reply, rule, accepted });
const NOT_REACHED: ReplayedStep = { reached: false, reply: null, rule: null, accepted: null };

describe('replay diff', () => {
  it('tells outcomes apart: 5xx refused, 4xx tempfailed, a rule header, quarantine or tag=yes tagged', () => {
    assert.equal(outcomeOf('550 5.7.1 No', null, 'X-Spam-Score'), 'refused');
    assert.equal(outcomeOf('451 4.3.0 Later', null, 'X-Spam-Score'), 'tempfailed');
    assert.equal(outcomeOf(null, { disposition: 'deliver', rule: null, headers: [['Authentication-Results', 'mx; spf=pass']] }, 'X-Spam-Score'), 'accepted');
    assert.equal(outcomeOf(null, { disposition: 'deliver', rule: null, headers: [['X-Spam-Score', '3 tag=no (A=3)']] }, 'X-Spam-Score'), 'accepted');
    assert.equal(outcomeOf(null, { disposition: 'deliver', rule: null, headers: [['X-Spam-Score', '9 tag=yes (A=9)']] }, 'X-Spam-Score'), 'tagged');
    assert.equal(outcomeOf(null, { disposition: 'deliver', rule: null, headers: [['X-Newsletter', 'yes']] }, 'X-Spam-Score'), 'tagged');
    assert.equal(outcomeOf(null, { disposition: 'quarantine', rule: 'q', headers: [] }, 'X-Spam-Score'), 'tagged');
  });

  it('counts a new refusal for the rule that refuses now, a new acceptance for the rule that refused before, and not-reached commands for neither', () => {
    const rec = session('s1', [
      { cmd: 'connect', t: T, ...ok },
      { cmd: 'mail', t: T, address: 'a@example.org', args: {}, ...ok },
      { cmd: 'rcpt', t: T, address: 'x@localhost', args: {}, reply: '550 5.7.1 Blocked', rule: 'old-rule' },
      { cmd: 'rcpt', t: T, address: 'y@localhost', args: {}, ...ok },
      { cmd: 'data', t: T, ...ok },
      message({ disposition: 'deliver', rule: null, headers: [] }),
      { cmd: 'close', t: T, ...ok },
    ]);
    const d = diffSession(rec, { id: 's1', missing: [], steps: [replayed(null), replayed(null), replayed(null), replayed('550 5.7.1 Nope', 'new-rule'), NOT_REACHED, NOT_REACHED, replayed(null)] }, 'X-Spam-Score');
    assert.deepEqual(d.changes.map((c) => [c.command, c.change, c.unit, c.rule]), [
      ['RCPT TO:<x@localhost>', 'accepted', 'recipients', 'old-rule'],
      ['RCPT TO:<y@localhost>', 'refused', 'recipients', 'new-rule'],
    ]);
    assert.equal(d.notReached, 2);
  });

  it('reports a tag, and a reply reworded in the same class', () => {
    const rec = session('s2', [{ cmd: 'connect', t: T, reply: '554 5.7.1 Old text', rule: 'r' }, message({ disposition: 'deliver', rule: null, headers: [] })]);
    const d = diffSession(rec, { id: 's2', missing: [], steps: [replayed('554 5.7.1 New text', 'r'), replayed(null, 'tagger', { disposition: 'quarantine', rule: 'tagger', headers: [] })] }, 'X-Spam-Score');
    assert.deepEqual(d.changes.map((c) => [c.change, c.unit, c.rule]), [['reworded', 'sessions', 'r'], ['tagged', 'messages', 'tagger']]);
  });

  it('sums per rule and change: sessions once each, recipients and messages, a few sample ids', () => {
    const summary = new ReplaySummary();
    for (const id of ['a', 'b', 'c', 'd', 'e', 'f']) {
      const rec = session(id, [{ cmd: 'rcpt', t: T, address: 'x@localhost', args: {}, ...ok }, { cmd: 'rcpt', t: T, address: 'y@localhost', args: {}, ...ok }]);
      summary.add(diffSession(rec, { id, missing: id === 'a' ? ['dnsbl:zen.example'] : [], steps: [replayed('550 5.7.1 No', 'r'), replayed('550 5.7.1 No', 'r')] }, 'X-Spam-Score'));
    }
    summary.add(diffSession(session('g', [{ cmd: 'connect', t: T, ...ok }]), { id: 'g', missing: [], steps: [replayed(null)] }, 'X-Spam-Score'));
    assert.deepEqual(summary.rules(), [{ rule: 'r', change: 'refused', sessions: 6, recipients: 12, messages: 0, samples: ['a', 'b', 'c', 'd', 'e'] }]);
    assert.equal(summary.sessions, 7);
    assert.equal(summary.changed, 6);
    assert.deepEqual([...summary.missing], [['dnsbl:zen.example', 1]]);
  });

  it('says why a record line is not a session this version reads', () => {
    assert.equal(notARecord([]), 'not a JSON object');
    assert.equal(notARecord({ v: 2 }), 'format version 2, this host reads 1');
    assert.equal(notARecord({ v: 1, id: 'x' }), 'missing id, client, dns, steps or facts');
    assert.equal(notARecord(session('ok', [{ cmd: 'connect', t: T, ...ok }])), null);
  });
});

describe('recorded facts in a replay', () => {
  it('count a fact the record lacks only once a phase waits for it (a prefetch the live session never saw answered is not lacking)', async () => {
    const f = new RecordedFacts({ 'dnsbl:zen.example:192.0.2.7': { status: 'listed', codes: ['127.0.0.2'], text: null }, 'mx:nowhere.example': null });
    assert.deepEqual(await f.dns.list('dnsbl', 'zen.example', '192.0.2.7', 0), { status: 'listed', codes: ['127.0.0.2'], text: null });
    assert.equal(f.dns.mx('nowhere.example', 0), null); // could not be looked up then: not now either
    const prefetched = f.dns.list('dnsbl', 'other.example', '192.0.2.7', 0);
    assert.deepEqual([...f.missing], []);
    assert.deepEqual(await prefetched, { status: 'error', codes: [], text: null });
    assert.deepEqual([...f.missing], ['dnsbl:other.example']);
  });
});
