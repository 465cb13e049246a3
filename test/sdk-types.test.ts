/**
 * Type tests of the SDK's public types: `tsc` (the first step of `npm test`) fails when
 * one of these stops holding, e.g. when `reject(450, …)` compiles again. The runtime test
 * below only checks that the constructors' cleaning matches the validator.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { expectTypeOf } from 'expect-type';
import {
  defineRule, drop, reject, REJECT_CODES, STATUS, tempfail, TEMPFAIL_CODES,
  type EnhancedStatus, type Json, type RejectCode, type RuleContext, type StoreOp, type TempfailCode,
} from '../sdk/index.js';
import { validateVerdict } from '../host/sandbox/validate.js';

// Compile-time checks only: this function is type-checked by tsc and never called (some
// of its lines would throw at run time, which is the point of the runtime guards).
export function typeChecks(): void {
  // Reply codes: a refusal carries a 5xx the SDK lists, a temporary one a 4xx.
  reject(550, 'ok');
  tempfail(450, 'ok');
  // @ts-expect-error a 4xx is not a permanent refusal
  reject(450, 'no');
  // @ts-expect-error a 5xx is not a temporary refusal
  tempfail(550, 'no');
  // @ts-expect-error 250 is not a refusal at all
  reject(250, 'no');
  expectTypeOf<RejectCode>().toEqualTypeOf<(typeof REJECT_CODES)[number]>();
  expectTypeOf<TempfailCode>().toEqualTypeOf<(typeof TEMPFAIL_CODES)[number]>();

  // Enhanced status: without its class digit, which comes from the code.
  reject(550, 'ok', { status: '7.1' });
  reject(550, 'ok', { status: STATUS.badMailbox });
  // @ts-expect-error the class digit is the code's: '5.7.1' cannot be written
  reject(550, 'no', { status: '5.7.1' });
  // @ts-expect-error not a status
  tempfail(451, 'no', { status: 'soon' });
  expectTypeOf(STATUS.notAuthorized).toMatchTypeOf<EnhancedStatus>();

  // Store operations: exactly the SDK's list.
  expectTypeOf<StoreOp>().toEqualTypeOf<'hit' | 'count' | 'blacklisted' | 'listHas' | 'listValues' | 'listAdd' | 'remember' | 'recall'>();
  expectTypeOf<RuleContext['store']>().not.toHaveProperty('mailbox');

  // Options: typed from the rule's JSON Schema, defaults always present.
  defineRule({
    name: 'typed-options',
    options: {
      type: 'object',
      additionalProperties: false,
      properties: {
        code: { enum: [450, 550], default: 550 },
        names: { type: 'array', items: { type: 'string' }, default: [] },
        limit: { type: 'integer' },
      },
    },
    needs: (o) => {
      expectTypeOf(o.code).toEqualTypeOf<450 | 550>();
      return [];
    },
    phases: {
      mail: (ev, ctx) => {
        expectTypeOf(ctx.options.code).toEqualTypeOf<450 | 550>();
        expectTypeOf(ctx.options.names).toEqualTypeOf<string[]>();
        expectTypeOf(ctx.options.limit).toEqualTypeOf<number | undefined>();
        // @ts-expect-error 450 from the options is no reject code: the rule must say tempfail
        reject(ctx.options.code, 'no');
        return ctx.options.code === 450 ? tempfail(450, 'later') : reject(550, 'no');
      },
    },
  });

  // The link and name-server needs, and the facts they give.
  defineRule({
    name: 'uri-facts',
    needs: ['uris', 'uribl:multi.surbl.org', 'uribl-ip:sbl.spamhaus.org', 'uri-dns', 'uri-ptr', 'ns'],
    phases: {
      mail: (ev) => {
        expectTypeOf(ev.dns.ns?.hosts[0]?.domainStatus).toEqualTypeOf<'exists' | 'nxdomain' | 'error' | undefined>();
      },
      message: (ev) => {
        for (const h of ev.message.uris?.hosts ?? []) {
          expectTypeOf(h.domain).toEqualTypeOf<string | null>();
          expectTypeOf(ev.dns.uribl?.[h.domain ?? '']?.[h.host]?.status).toEqualTypeOf<'listed' | 'clear' | 'refused' | 'error' | undefined>();
          expectTypeOf(ev.dns.uriHosts?.[h.host]?.ptr?.ipInName).toEqualTypeOf<string | null | undefined>();
        }
      },
    },
  });
  // @ts-expect-error 'uri:<zone>' is no need (the URI lists are 'uribl:<zone>')
  defineRule({ name: 'bad-need', needs: ['uri:multi.surbl.org'], phases: {} });

  // Notes hold JSON, in the phases that have them.
  defineRule({
    name: 'notes',
    phases: {
      rcpt: (ev, ctx) => {
        expectTypeOf(ev.envelope.notes).toEqualTypeOf<Readonly<Record<string, Json>>>();
        ctx.note.tx('count', 1);
        ctx.note.session('seen', { at: ev.session.time, names: ['a'] });
        // @ts-expect-error a function is not JSON
        ctx.note.session('fn', () => 1);
        // @ts-expect-error a rule without options has none
        void ctx.options.anything;
      },
    },
  });
}

describe('SDK constructors', () => {
  it('clean what they are given, so the host always takes what they build', () => {
    assert.deepEqual(validateVerdict(reject(550, 'No such user: jos\u00e9@example.org\r\nX', { reason: 'My List_1' })), {
      action: 'reject', code: 550, text: 'No such user: jos?@example.org??X', reason: 'my-list_1',
    });
    assert.deepEqual(validateVerdict(drop('x'.repeat(500))), { action: 'drop', text: 'x'.repeat(400) });
  });
});
