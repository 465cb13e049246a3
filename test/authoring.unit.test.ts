/** The pieces behind `portcullis check`'s type check and `portcullis test`'s arguments. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { splitArgs } from '../host/cli/test.js';
import { formatTypeProblem, parseDiagnostics } from '../host/typecheck.js';

describe('parseDiagnostics (tsc --pretty false)', () => {
  it('reads located errors with their message chains, and errors of the whole program', () => {
    const out = [
      "rules/a.ts(6,53): error TS2339: Property 'subject' does not exist on type 'X'.",
      "../elsewhere/b.ts(2,7): error TS2322: Type '{ a: number; }' is not assignable to type 'Y'.",
      "  Object literal may only specify known properties, and 'a' does not exist in type 'Y'.",
      "error TS6053: File '/gone.ts' not found.",
      '',
    ].join('\n');
    assert.deepEqual(parseDiagnostics(out, '/work/x').map(formatTypeProblem), [
      "/work/x/rules/a.ts:6:53: TS2339: Property 'subject' does not exist on type 'X'.",
      "/work/elsewhere/b.ts:2:7: TS2322: Type '{ a: number; }' is not assignable to type 'Y'.\n  Object literal may only specify known properties, and 'a' does not exist in type 'Y'.",
      "TS6053: File '/gone.ts' not found.",
    ]);
  });
});

describe('splitArgs (portcullis test)', () => {
  it("gives node its --test-* flags with their values, and everything after --; keeps ours", () => {
    assert.deepEqual(splitArgs(['--rules', 'mine', '--test-name-pattern', 'refuses', 'extra', '--test-only', '--test-reporter=spec', '--', '--stack-trace-limit=50']), {
      ours: ['--rules', 'mine', 'extra'],
      node: ['--test-name-pattern', 'refuses', '--test-only', '--test-reporter=spec', '--stack-trace-limit=50'],
    });
  });
});
