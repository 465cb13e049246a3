/**
 * Where a rule runs (`rules.settings.<name>.only` / `.except`), over real SMTP: the same
 * rule refuses or stays silent by client network, sender and recipient, as the config
 * says, without editing the rule.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RawSmtp, rule, withHost } from './helpers.js';

const NO = "{ rcpt: () => reject(550, 'Kept out') }";
const localDomains = ['localhost', 'example.org', 'mail.example.org'];

/** One transaction from `ip`: the MAIL reply, then each RCPT's. */
async function replies(port: number, ip: string, from: string, rcpts: string[]): Promise<string[]> {
  const { c } = await RawSmtp.open(port, ip);
  try {
    await c.cmd('EHLO client.example.net');
    return [await c.cmd(`MAIL FROM:<${from}>`), ...(await Promise.all(rcpts.map(async (r) => c.cmd(`RCPT TO:<${r}>`))))];
  } finally {
    c.end();
  }
}

describe('rules kept to or from some mail (only / except)', () => {
  it('only.recipients: the rule refuses recipients at those domains, and no others', async () => {
    await withHost({ rules: { 'r.ts': rule('guard', NO) }, config: { localDomains, rules: { settings: { guard: { only: { recipients: ['example.org'] } } } } } }, async (h) => {
      assert.deepEqual(await replies(h.port, '127.0.0.21', 'a@example.net', ['x@example.org']), ['250 2.1.0 Accepted', '550 5.7.1 Kept out']);
      assert.deepEqual(await replies(h.port, '127.0.0.21', 'a@example.net', ['x@mail.example.org']), ['250 2.1.0 Accepted', '250 2.1.5 Accepted']);
      assert.deepEqual(await replies(h.port, '127.0.0.21', 'a@example.net', ['x@localhost']), ['250 2.1.0 Accepted', '250 2.1.5 Accepted']);
    });
  });

  it('except.clients: clients in those networks are left alone, others are refused', async () => {
    await withHost({ rules: { 'r.ts': rule('strict', NO) }, config: { rules: { settings: { strict: { except: { clients: ['127.0.0.22/32', '10.0.0.0/8'] } } } } } }, async (h) => {
      assert.deepEqual(await replies(h.port, '127.0.0.22', 'a@example.net', ['x@localhost']), ['250 2.1.0 Accepted', '250 2.1.5 Accepted']);
      assert.deepEqual(await replies(h.port, '127.0.0.23', 'a@example.net', ['x@localhost']), ['250 2.1.0 Accepted', '550 5.7.1 Kept out']);
    });
  });

  it('only.senders: the null sender and subdomains (.example.net), not the parent domain', async () => {
    await withHost({ rules: { 'r.ts': rule('bounces', NO) }, config: { rules: { settings: { bounces: { only: { senders: ['<>', '.example.net'] } } } } } }, async (h) => {
      assert.deepEqual(await replies(h.port, '127.0.0.24', '', ['x@localhost']), ['250 2.1.0 Accepted', '550 5.7.1 Kept out']);
      assert.deepEqual(await replies(h.port, '127.0.0.24', 'a@mx.example.net', ['x@localhost']), ['250 2.1.0 Accepted', '550 5.7.1 Kept out']);
      assert.deepEqual(await replies(h.port, '127.0.0.24', 'a@example.net', ['x@localhost']), ['250 2.1.0 Accepted', '250 2.1.5 Accepted']);
    });
  });

  it('only.recipients at DATA: the rule runs when any recipient of the transaction is in scope', async () => {
    const data = rule('vip-guard', "{ data: () => reject(554, 'Not for the VIP') }");
    await withHost({ rules: { 'r.ts': data }, config: { rules: { settings: { 'vip-guard': { only: { recipients: ['vip@localhost'] } } } } } }, async (h) => {
      for (const [rcpts, reply] of [[['a@localhost'], '354'], [['a@localhost', 'vip@localhost'], '554 5.7.1 Not for the VIP']] as const) {
        const { c } = await RawSmtp.open(h.port, '127.0.0.25');
        await c.cmd('EHLO client.example.net');
        await c.cmd('MAIL FROM:<a@example.net>');
        for (const r of rcpts) await c.cmd(`RCPT TO:<${r}>`);
        assert.ok((await c.cmd('DATA')).startsWith(reply), `DATA for ${rcpts.join(', ')}`);
        c.end();
      }
    });
  });

  it('a client network that is not one is refused at load with its config path', async () => {
    await assert.rejects(withHost({ rules: { 'r.ts': rule('strict', NO) }, config: { rules: { settings: { strict: { except: { clients: ['10.0.0.0/33', 'nowhere'] } } } } } }, async () => undefined),
      (e: Error) => /\/rules\/settings\/strict\/except\/clients\/0: prefix length must be 0–32/.test(e.message) && /\/rules\/settings\/strict\/except\/clients\/1: "nowhere" is not an IP address or network/.test(e.message));
  });
});
