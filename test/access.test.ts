/** The access map over real SMTP: the built-in rule turned on with entries in the config. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { RawSmtp, withHost } from './helpers.js';

it('access: a refused client hears 554 at the greeting; a closed mailbox 550 at RCPT; others pass', async () => {
  const entries = ['Connect:127.0.0.51 REJECT Go away', 'To:closed@localhost REJECT This mailbox is closed'];
  await withHost({ builtin: true, config: { rules: { settings: { access: { enabled: true, options: { entries } } } } } }, async (h) => {
    const refused = await RawSmtp.open(h.port, '127.0.0.51');
    assert.equal(refused.greeting, '554 5.7.1 Go away');
    refused.c.end();
    const { c, greeting } = await RawSmtp.open(h.port, '127.0.0.52');
    assert.match(greeting, /^220 /);
    await c.cmd('EHLO mx.example.net');
    await c.cmd('MAIL FROM:<a@example.net>');
    assert.equal(await c.cmd('RCPT TO:<closed@localhost>'), '550 5.7.1 This mailbox is closed');
    assert.equal(await c.cmd('RCPT TO:<open@localhost>'), '250 2.1.5 Accepted');
    c.end();
  });
});

it('delayChecks: the refused client is greeted, and its refusal comes at RCPT, except for a whitelisted recipient', async () => {
  const entries = ['Connect:127.0.0.53 REJECT Go away', 'To:postmaster@localhost OK'];
  await withHost({ builtin: true, config: { delayChecks: true, rules: { settings: { access: { enabled: true, options: { entries } } } } } }, async (h) => {
    const { c, greeting } = await RawSmtp.open(h.port, '127.0.0.53');
    assert.match(greeting, /^220 /);
    assert.match(await c.cmd('EHLO mx.example.net'), /^250/);
    assert.equal(await c.cmd('MAIL FROM:<a@example.net>'), '250 2.1.0 Accepted');
    assert.equal(await c.cmd('RCPT TO:<user@localhost>'), '554 5.7.1 Go away');
    assert.equal(await c.cmd('RCPT TO:<postmaster@localhost>'), '250 2.1.5 Accepted');
    c.end();
    assert.ok(h.logs.some((l) => l.msg === 'holding the refusal of connect from 127.0.0.53 until RCPT (delayChecks): 554 5.7.1 Go away'));
  });
});
