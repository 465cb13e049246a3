/**
 * The pure pieces of `portcullis queue|quarantine`: how long things are said to take, and
 * what the control socket accepts as a request (never a path in place of a message id).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { span } from '../host/cli/queue.js';
import { parseRequest } from '../host/delivery/admin.js';

describe('span', () => {
  for (const [ms, want] of [[0, '0s'], [59_400, '59s'], [60_000, '1m'], [3_599_000, '59m'], [3_600_000, '1h00m'], [7_500_000, '2h05m'], [86_400_000, '1d00h'], [100_000_000, '1d03h'], [-5_000, '0s']] as const) {
    it(`says ${ms} ms as ${want}`, () => assert.equal(span(ms), want));
  }
});

describe('a control request', () => {
  it('is taken when its op is known and its id is a message id', () => {
    assert.deepEqual(parseRequest({ op: 'queue-delete', id: 'MX3WRV7RF2492400001' }), { op: 'queue-delete', id: 'MX3WRV7RF2492400001' });
    assert.deepEqual(parseRequest({ op: 'queue-retry-all', id: 'ignored' }), { op: 'queue-retry-all' });
  });

  it('is refused otherwise: unknown op, missing id, a path, not an object', () => {
    for (const x of [{ op: 'rm-rf' }, { op: 'queue-delete' }, { op: 'quarantine-release', id: '../../status' }, { op: 'queue-retry', id: 'a.msg' }, { op: 'toString', id: 'X' }, null, 'queue-delete', [1]]) {
      assert.equal(parseRequest(x), null, JSON.stringify(x));
    }
  });
});
