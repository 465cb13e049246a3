/**
 * The metric catalogue (host/metrics.ts): a misspelt metric or label, a missing label or
 * a value outside a listed set does not compile (`tsc`, the first step of `npm test`,
 * checks `typeChecks`); what one host counts is its own; samples read the same whatever
 * order a call site gives the labels in; README lists every metric.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { METRICS, Metrics, replyClass } from '../host/metrics.js';
import { ROOT } from '../host/paths.js';

// Compile-time checks only: type-checked by tsc, never called.
export function typeChecks(m: Metrics): void {
  m.inc('rule_verdicts_total', { rule: 'no-x', phase: 'rcpt', action: 'reject', mode: 'enforce' });
  m.inc('bounces_total');
  m.inc('deliveries_total', { path: 'relay', result: 'delivered' }, 3);
  m.observe('rule_call_duration_seconds', { rule: 'no-x', phase: 'mail' }, 0.001);
  m.collect('store_entries', (set) => set({ kind: 'blacklist' }, 1));
  // @ts-expect-error a misspelt metric
  m.inc('rule_verdict_total', { rule: 'no-x', phase: 'rcpt', action: 'reject', mode: 'enforce' });
  // @ts-expect-error a label missing
  m.inc('rule_verdicts_total', { rule: 'no-x', phase: 'rcpt', action: 'reject' });
  // @ts-expect-error a label the metric does not have
  m.inc('rule_verdicts_total', { rule: 'no-x', phase: 'rcpt', action: 'reject', mode: 'enforce', client: '192.0.2.1' });
  // @ts-expect-error not a phase
  m.inc('rule_verdicts_total', { rule: 'no-x', phase: 'rcpt-to', action: 'reject', mode: 'enforce' });
  // @ts-expect-error not a verdict action
  m.inc('rule_verdicts_total', { rule: 'no-x', phase: 'rcpt', action: 'refuse', mode: 'enforce' });
  // @ts-expect-error not one of the listed results
  m.inc('reloads_total', { result: 'failure' });
  // @ts-expect-error a labelled counter needs its labels
  m.inc('reloads_total');
  // @ts-expect-error a gauge is not counted up
  m.inc('sessions_open');
  // @ts-expect-error not a kind of store entry
  m.collect('store_entries', (set) => set({ kind: 'blacklists' }, 1));
}

/** The sample lines of one metric family, in the order served. */
async function samples(m: Metrics, name: string): Promise<string[]> {
  return (await m.exposition()).body.split('\n').filter((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
}

describe('metrics', () => {
  it('admin.metrics false: nothing is counted (what the bench compares against)', async () => {
    const off = new Metrics(false);
    off.inc('sessions_total');
    off.observe('rule_call_duration_seconds', { rule: 'r', phase: 'rcpt' }, 0.001);
    assert.deepEqual([await off.get('sessions_total'), await off.get('rule_call_duration_seconds', { rule: 'r', phase: 'rcpt' })], [0, 0]);
  });

  it('shows every combination of listed label values from the start, at 0, and nothing for open ones', async () => {
    const m = new Metrics();
    assert.deepEqual(await samples(m, 'portcullis_reloads_total'), ['portcullis_reloads_total{result="ok"} 0', 'portcullis_reloads_total{result="failed"} 0']);
    assert.deepEqual(await samples(m, 'portcullis_rule_verdicts_total'), []);
  });

  it('writes labels in the catalogue\'s order whatever order the call gives', async () => {
    const m = new Metrics();
    m.inc('rule_verdicts_total', { mode: 'shadow', action: 'reject', phase: 'rcpt', rule: 'no-x' });
    m.inc('rule_verdicts_total', { rule: 'no-x', phase: 'rcpt', action: 'reject', mode: 'shadow' }, 2);
    assert.deepEqual(await samples(m, 'portcullis_rule_verdicts_total'), ['portcullis_rule_verdicts_total{rule="no-x",phase="rcpt",action="reject",mode="shadow"} 3']);
    assert.equal(await m.get('rule_verdicts_total', { rule: 'no-x', phase: 'rcpt', action: 'reject', mode: 'shadow' }), 3);
  });

  it('keeps each host\'s counts apart (a registry each, not the process-wide one)', async () => {
    const a = new Metrics();
    const b = new Metrics();
    a.inc('sessions_total');
    assert.deepEqual([await a.get('sessions_total'), await b.get('sessions_total')], [1, 0]);
  });

  it('reads a gauge when scraped, from the function that keeps it', async () => {
    const m = new Metrics();
    let open = 3;
    m.collect('sessions_open', (set) => set({}, open));
    assert.deepEqual(await samples(m, 'portcullis_sessions_open'), ['portcullis_sessions_open 3']);
    open = 1;
    assert.deepEqual(await samples(m, 'portcullis_sessions_open'), ['portcullis_sessions_open 1']);
  });

  it('snapshots non-zero samples for portcullis stats: histograms as their count', async () => {
    const m = new Metrics();
    m.observe('rule_call_duration_seconds', { rule: 'no-x', phase: 'rcpt' }, 0.002);
    m.inc('deliveries_total', { path: 'queue', result: 'delivered' });
    assert.deepEqual(await m.snapshot(), {
      'rule_call_duration_seconds_count{rule="no-x",phase="rcpt"}': 1,
      'deliveries_total{path="queue",result="delivered"}': 1,
    });
  });

  it('classes reply codes by their first digit', () => {
    assert.deepEqual([220, 354, 451, 550].map(replyClass), ['2xx', '3xx', '4xx', '5xx']);
  });

  it('README lists every metric, with its labels', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const missing = Object.entries(METRICS)
      .map(([name, def]) => `${name}${Object.keys(def.labels).length ? `{${Object.keys(def.labels).join(',')}}` : ''}`)
      .filter((entry) => !readme.includes(`\`${entry}\``));
    assert.deepEqual(missing, []);
  });
});
