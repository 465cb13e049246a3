/**
 * docs/contract.md describes the contract the SDK defines: every phase, reply code,
 * status constant, store operation, SPF result and failure outcome must be in it (fastify keeps its
 * error catalogue and its docs in sync the same way).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ROOT } from '../host/paths.js';
import { OUTCOMES } from '../host/sandbox/protocol.js';
import { ARC_RESULTS, CALLAHEAD_RESULTS, DKIM_RESULTS, DMARC_RESULTS, PHASES, REJECT_CODES, SPF_RESULTS, STATUS, STORE_OPS, TEMPFAIL_CODES } from '../sdk/index.js';

const doc = readFileSync(join(ROOT, 'docs', 'contract.md'), 'utf8');
const listed = (what: string) => doc.includes(`| \`${what}\``);

describe('docs/contract.md', () => {
  it('has a table row for every phase, reply code, store operation, SPF, DKIM, DMARC, ARC and call-ahead result and outcome', () => {
    const missing = [
      ...PHASES.filter((p) => !listed(p)).map((p) => `phase ${p}`),
      ...SPF_RESULTS.filter((r) => !listed(r)).map((r) => `SPF result ${r}`),
      ...[...DKIM_RESULTS, ...DMARC_RESULTS, ...ARC_RESULTS].filter((r) => !listed(r)).map((r) => `DKIM/DMARC/ARC result ${r}`),
      ...CALLAHEAD_RESULTS.filter((r) => !listed(r)).map((r) => `call-ahead result ${r}`),
      ...[...REJECT_CODES, ...TEMPFAIL_CODES].filter((c) => !listed(String(c))).map((c) => `code ${c}`),
      ...STORE_OPS.filter((op) => !doc.includes(`| \`${op}(`)).map((op) => `store operation ${op}`),
      ...OUTCOMES.filter((o) => o !== 'ok' && !listed(o)).map((o) => `outcome ${o}`),
    ];
    assert.deepEqual(missing, []);
  });

  it('names every STATUS constant with its value', () => {
    const missing = Object.entries(STATUS).filter(([name, value]) => !doc.includes(`| \`STATUS.${name}\` | \`${value}\` |`));
    assert.deepEqual(missing, []);
  });
});
