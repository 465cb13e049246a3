/**
 * Relay mode against a real next hop (a second smtp-server): 250 only after the next hop's
 * 250, its refusals relayed, a next hop that is down → 451 4.4.1; partial refusals; routes;
 * quarantine and redirect; SMTP smuggling never reaches the next hop as two messages.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig, configFrom, ConfigError } from '../host/config/config.js';
import { envelopeOn, eventually, mailer, RawSmtp, rule, spawnHost, splitFields, spooled, tempDir, withHost } from './helpers.js';
import { nextHopAnswer } from '../host/delivery/relay.js';
import { outcomeReply } from '../host/smtp/outcome-reply.js';
import { formatReply } from '../host/smtp/reply.js';
import { deadPort, startNextHop, type TestNextHop } from './nexthop.js';

const hop = (port: number) => ({ host: '127.0.0.1', port, starttls: 'off' });
const relayTo = (port: number, extra: Record<string, unknown> = {}) => ({ delivery: { mode: 'relay', nextHop: hop(port), queue: { retryBaseMs: 20, retryMaxMs: 100 }, ...extra } });
const send = (port: number, to: string[], raw: string | Buffer, from = 'a@example.org') => mailer(port).sendMail({ envelope: { from, to }, raw });
const errorOf = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
  } catch (e) {
    return (e as { response?: string }).response ?? String(e);
  }
  return 'no error';
};

let down: TestNextHop;
const refusals: Record<string, string> = {
  'nosuch@localhost': '550 5.1.1 No such user',
  'full@localhost': '452 4.2.2 Mailbox full',
  'nosuch2@localhost': '550 5.1.1 No such user',
};
before(async () => {
  down = await startNextHop({
    rcpt: (a) => refusals[a] ?? null,
    data: (m) => (/^Subject: spam/m.test(m.raw.toString()) ? '554 5.7.1 Message refused as spam' : null),
  });
});
after(async () => down.close());

describe('relay mode: the next hop decides', () => {
  it('relays accepted messages byte-identical apart from the added headers, 250 only after the next hop\'s 250', async () => {
    await withHost({ rules: { 't.ts': rule('tag', `{ message: (ev, ctx) => { ctx.addHeader('X-Tag', 'seen'); } }`) }, config: relayTo(down.port) }, async (h) => {
      const before = down.received.length;
      const sent: Buffer[] = [];
      for (let i = 0; i < 3; i++) {
        const raw = Buffer.concat([
          Buffer.from(`From: a@example.org\r\nTo: user@localhost\r\nSubject: relay ${i}\r\n\r\n`),
          Buffer.from(`.leading dot\r\n..two dots\r\n.\r\nh\u00e9llo ${randomBytes(8).toString('hex')}\r\n${'x'.repeat(990)}\r\n`, 'utf8'),
        ]);
        sent.push(raw);
        const info = await send(h.port, ['user@localhost'], raw);
        assert.match(info.response, /^250 2\.0\.0 Ok: relayed as [0-9A-Z]+ \(next hop: 250 Ok: stored\)$/);
        // The 250 came after the next hop stored it: it is there already.
        assert.equal(down.received.length, before + i + 1);
      }
      for (const [i, m] of down.received.slice(before).entries()) {
        const { fields, rest } = splitFields(m.raw, 2);
        assert.match(fields[0]!, /^Received: from \S+ \(\[127\.0\.0\.1\]\)\r\n\tby localhost \(Portcullis\) with ESMTP id [0-9A-Z]+\r\n\tfor <user@localhost>;/);
        assert.equal(fields[1], 'X-Tag: seen\r\n');
        assert.ok(rest.equals(sent[i]!), `message ${i} arrives byte-identical`);
        assert.equal(m.from, 'a@example.org');
        assert.deepEqual(m.to, ['user@localhost']);
      }
      assert.equal(spooled(h.dataDir).length, 0, 'relay mode spools nothing that was relayed');
    });
  });

  it('relays the next hop\'s 5xx and 4xx with their text, prefixed with the next hop', async () => {
    await withHost({ config: relayTo(down.port) }, async (h) => {
      const at = `127.0.0.1:${down.port}`;
      assert.equal(await errorOf(send(h.port, ['nosuch@localhost'], 'Subject: hi\r\n\r\nx\r\n')), `550 5.1.1 Next hop ${at}: No such user`);
      assert.equal(await errorOf(send(h.port, ['user@localhost'], 'Subject: spam offer\r\n\r\nx\r\n')), `554 5.7.1 Next hop ${at}: Message refused as spam`);
      assert.equal(await errorOf(send(h.port, ['full@localhost'], 'Subject: hi\r\n\r\nx\r\n')), `452 4.2.2 Next hop ${at}: Mailbox full`);
      assert.equal(spooled(h.dataDir).length, 0);
      // The session goes on: a 4xx/5xx at the final dot ends the transaction only.
      const { c } = await RawSmtp.open(h.port);
      await envelopeOn(c, 'a@example.org', 'nosuch@localhost');
      assert.equal(await c.cmd('DATA'), '354 End data with <CR><LF>.<CR><LF>');
      assert.equal(await c.cmd('Subject: x\r\n\r\nbody\r\n.'), `550 5.1.1 Next hop ${at}: No such user`);
      assert.equal(await c.cmd('RSET'), '250 2.0.0 Flushed');
      c.end();
    });
  });

  it('a next hop that is down gives 451 4.4.1, never a 250, and nothing is kept', async () => {
    await withHost({ config: relayTo(await deadPort()) }, async (h) => {
      const r = await errorOf(send(h.port, ['user@localhost'], 'Subject: hi\r\n\r\nx\r\n'));
      assert.match(r, /^451 4\.4\.1 Next hop not reachable, please try again later \(session [a-z0-9]+\)$/);
      assert.equal(spooled(h.dataDir).length, 0);
      assert.ok(h.logs.some((l) => /^not relayed [0-9A-Z]+ \(deferred by the next hop\): <user@localhost> 127\.0\.0\.1:\d+: ESOCKET/.test(String(l.msg))));
    });
  });

  it('a next hop that never answers gives 451 4.4.1 after connectTimeoutMs', async () => {
    const { createServer } = await import('node:net');
    const silent = createServer(() => undefined); // accepts, never greets
    await new Promise<void>((ok) => silent.listen(0, '127.0.0.1', () => ok()));
    const port = (silent.address() as { port: number }).port;
    try {
      await withHost({ config: { delivery: { mode: 'relay', nextHop: { ...hop(port), connectTimeoutMs: 300 } } } }, async (h) => {
        assert.match(await errorOf(send(h.port, ['user@localhost'], 'Subject: hi\r\n\r\nx\r\n')), /^451 4\.4\.1 /);
      });
    } finally {
      silent.close();
    }
  });
});

describe('relay mode: TLS and AUTH to the next hop', () => {
  it('opportunistic STARTTLS upgrades when offered (certificate not verified) and AUTH logs in', async () => {
    const secure = await startNextHop({ starttls: true, auth: { user: 'relay', pass: 'pw' } });
    try {
      await withHost({ config: { delivery: { mode: 'relay', nextHop: { host: '127.0.0.1', port: secure.port, starttls: 'opportunistic', auth: { user: 'relay', pass: 'pw' } } } } }, async (h) => {
        assert.match((await send(h.port, ['u@localhost'], 'Subject: tls\r\n\r\nx\r\n')).response, /^250 2\.0\.0 Ok: relayed as /);
        assert.deepEqual(secure.received.map((m) => [m.secure, m.user]), [[true, 'relay']]);
      });
    } finally {
      await secure.close();
    }
  });

  it('required STARTTLS refuses a next hop whose certificate cannot be verified: 451 4.4.1, nothing sent', async () => {
    const selfSigned = await startNextHop({ starttls: true });
    try {
      await withHost({ config: { delivery: { mode: 'relay', nextHop: { host: '127.0.0.1', port: selfSigned.port, starttls: 'required' } } } }, async (h) => {
        assert.match(await errorOf(send(h.port, ['u@localhost'], 'Subject: tls\r\n\r\nx\r\n')), /^451 4\.4\.1 Next hop not reachable/);
        assert.equal(selfSigned.received.length, 0);
      });
    } finally {
      await selfSigned.close();
    }
  });

  it('wrong AUTH credentials are our configuration\'s fault: 451 4.4.1, never a 5xx', async () => {
    const authed = await startNextHop({ auth: { user: 'relay', pass: 'pw' } });
    try {
      await withHost({ config: { delivery: { mode: 'relay', nextHop: { ...hop(authed.port), auth: { user: 'relay', pass: 'nope' } } } } }, async (h) => {
        assert.match(await errorOf(send(h.port, ['u@localhost'], 'Subject: auth\r\n\r\nx\r\n')), /^451 4\.4\.1 Next hop not reachable/);
        assert.equal(authed.received.length, 0);
        assert.ok(h.logs.some((l) => /^not relayed .*: EAUTH: .*535/.test(String(l.msg))), 'the log says why');
      });
    } finally {
      await authed.close();
    }
  });
});

describe('relay mode: some recipients refused', () => {
  it('250 when one recipient is accepted and one refused for good; the sender gets a bounce (RFC 3464)', async () => {
    await withHost({ config: relayTo(down.port) }, async (h) => {
      const n = down.received.length;
      const info = await send(h.port, ['user@localhost', 'nosuch@localhost'], 'Subject: partial\r\nMessage-ID: <p1@example.org>\r\n\r\nx\r\n', 'sender@example.org');
      assert.match(info.response, /^250 2\.0\.0 Ok: relayed as [0-9A-Z]+ \(next hop: 1 of 2 recipients accepted, the rest queued or bounced\)$/);
      await eventually('the bounce reaches the sender\'s next hop', () => down.received.length === n + 2);
      const [msg, bounce] = down.received.slice(n);
      assert.deepEqual(msg!.to, ['user@localhost']);
      assert.equal(bounce!.from, '');
      assert.deepEqual(bounce!.to, ['sender@example.org']);
      const text = bounce!.raw.toString();
      assert.match(text, /^Content-Type: multipart\/report; report-type=delivery-status;/m);
      assert.match(text, /^Final-Recipient: rfc822; nosuch@localhost\r\nAction: failed\r\nStatus: 5\.1\.1\r\nRemote-MTA: dns; 127\.0\.0\.1\r\nDiagnostic-Code: smtp; 550 5\.1\.1 No such user\r\n/m);
      assert.match(text, /^Message-ID: <p1@example\.org>\r\n/m, 'the original header comes back');
      assert.equal(await h.host.metrics.get('deliveries_total', { path: 'relay', result: 'bounced' }), 1);
      assert.equal(await h.host.metrics.get('deliveries_total', { path: 'relay', result: 'delivered' }), 1);
      await eventually('the spool is empty', () => spooled(h.dataDir).length === 0);
    });
  });

  it('no bounce for the null sender', async () => {
    await withHost({ config: relayTo(down.port) }, async (h) => {
      const n = down.received.length;
      const info = await send(h.port, ['user@localhost', 'nosuch@localhost'], 'Subject: dsn\r\n\r\nx\r\n', '');
      assert.match(info.response, /^250 /);
      assert.ok(h.logs.some((l) => /no bounce: the sender is <>/.test(String(l.msg))));
      assert.equal(down.received.length, n + 1);
      assert.equal(spooled(h.dataDir).length, 0);
    });
  });

  it('a recipient refused for now is queued and delivered when the next hop takes it', async () => {
    let busy = 2;
    const moody = await startNextHop({ rcpt: (a) => (a === 'later@localhost' && busy-- > 0 ? '451 4.3.0 Try later' : null) });
    try {
      await withHost({ config: relayTo(moody.port) }, async (h) => {
        const info = await send(h.port, ['now@localhost', 'later@localhost'], 'Subject: split\r\n\r\nx\r\n');
        assert.match(info.response, /^250 2\.0\.0 Ok: relayed as /);
        await eventually('the queue delivers the rest', () => moody.received.length === 2);
        assert.deepEqual(moody.received.map((m) => m.to), [['now@localhost'], ['later@localhost']]);
        assert.ok(moody.received[1]!.raw.equals(moody.received[0]!.raw), 'the same bytes');
        await eventually('the spool is empty', () => spooled(h.dataDir).length === 0);
      });
    } finally {
      await moody.close();
    }
  });
});

describe('relay mode: DSN parameters (RFC 3461)', () => {
  it('are passed to the next hop; a bounce honours NOTIFY, echoes ENVID and ORCPT, and returns the whole message for RET=FULL', async () => {
    await withHost({ config: relayTo(down.port) }, async (h) => {
      const n = down.received.length;
      const { c } = await RawSmtp.open(h.port);
      await c.cmd('EHLO client.example');
      assert.equal(await c.cmd('MAIL FROM:<sender@example.org> RET=FULL ENVID=env+2B1'), '250 2.1.0 Accepted');
      assert.equal(await c.cmd('RCPT TO:<u@localhost> NOTIFY=NEVER'), '250 2.1.5 Accepted');
      assert.equal(await c.cmd('RCPT TO:<nosuch@localhost> NOTIFY=FAILURE,DELAY ORCPT=rfc822;alias@example.org'), '250 2.1.5 Accepted');
      assert.equal(await c.cmd('RCPT TO:<nosuch2@localhost> NOTIFY=NEVER'), '250 2.1.5 Accepted');
      await c.cmd('DATA');
      assert.match(await c.cmd('Subject: dsn\r\n\r\nthe body\r\n.'), /^250 2\.0\.0 Ok: relayed as /);
      c.end();
      await eventually('one bounce (for nosuch only) reaches the sender', () => down.received.length === n + 2);
      const [msg, bounce] = down.received.slice(n);
      assert.deepEqual(msg!.dsn, { ret: 'FULL', envid: 'env+1', rcpts: [{ notify: ['NEVER'] }] });
      const text = bounce!.raw.toString();
      assert.match(text, /\r\nOriginal-Envelope-Id: env\+1\r\nReporting-MTA: /);
      assert.match(text, /\r\n\r\nOriginal-Recipient: rfc822; alias@example\.org\r\nFinal-Recipient: rfc822; nosuch@localhost\r\n/);
      assert.doesNotMatch(text, /nosuch2@localhost/);
      assert.match(text, /Content-Type: message\/rfc822\r\n\r\nReceived: [^]*\r\nSubject: dsn\r\n\r\nthe body\r\n/);
      assert.ok(h.logs.some((l) => /^giving up on \S+ for <nosuch2@localhost> .*no bounce: the client asked NOTIFY=NEVER/.test(String(l.msg))));
    });
  });
});

describe('relay mode: routes, quarantine, redirect', () => {
  it('routes a recipient domain to its own next hop', async () => {
    const other = await startNextHop();
    try {
      await withHost({ config: { localDomains: ['localhost', 'example.net'], ...relayTo(down.port, { routes: { 'Example.NET': hop(other.port) } }) } }, async (h) => {
        const n = down.received.length;
        assert.match((await send(h.port, ['u@localhost', 'v@example.net'], 'Subject: two hops\r\n\r\nx\r\n')).response, /^250 /);
        assert.deepEqual(other.received.map((m) => m.to), [['v@example.net']]);
        assert.deepEqual(down.received.slice(n).map((m) => m.to), [['u@localhost']]);
      });
    } finally {
      await other.close();
    }
  });

  it('quarantine is never relayed; redirect replaces the recipients', async () => {
    const rules = { 'q.ts': rule('router', `{ message: (ev) => /quarantine/.test(ev.message.headers.find(([n]) => n === 'Subject')?.[1] ?? '') ? quarantine({ reason: 'looks-odd' }) : /redirect/.test(ev.message.headers.find(([n]) => n === 'Subject')?.[1] ?? '') ? redirect('abuse@localhost') : next() }`) };
    await withHost({ rules, config: relayTo(down.port) }, async (h) => {
      const n = down.received.length;
      assert.match((await send(h.port, ['u@localhost'], 'Subject: quarantine me\r\n\r\nx\r\n')).response, /^250 2\.0\.0 Ok: queued as /);
      assert.equal(down.received.length, n);
      const [q] = spooled(h.dataDir, 'quarantine');
      assert.equal(q?.env.disposition?.reason, 'looks-odd');
      assert.match((await send(h.port, ['u@localhost'], 'Subject: redirect me\r\n\r\nx\r\n')).response, /^250 2\.0\.0 Ok: relayed as /);
      assert.deepEqual(down.received.slice(n).map((m) => m.to), [['abuse@localhost']]);
    });
  });
});

describe('relay mode: SMTP smuggling', () => {
  // smtp-server ends DATA only at <CRLF>.<CRLF>; these sequences stay in the message. The
  // next hop must not see them as an end of data either: nodemailer writes bare LF and
  // bare CR as CRLF and dot-stuffs the line, so they arrive as a line with one dot.
  for (const [name, seq] of [['<LF>.<LF>', '\n.\n'], ['<CR>.<CR>', '\r.\r'], ['<LF>.<CRLF>', '\n.\r\n'], ['<CR>.<CRLF>', '\r.\r\n']] as const) {
    it(`${name} inside DATA reaches the next hop as one message, nothing smuggled`, async () => {
      await withHost({ config: relayTo(down.port) }, async (h) => {
        const n = down.received.length;
        const { c } = await RawSmtp.open(h.port);
        await envelopeOn(c, 'a@example.org', 'user@localhost');
        assert.equal(await c.cmd('DATA'), '354 End data with <CR><LF>.<CR><LF>');
        const smuggled = `Subject: innocent\r\n\r\nhello${seq}MAIL FROM:<admin@localhost>\r\nRCPT TO:<victim@localhost>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n`;
        c.write(smuggled);
        assert.match(await c.reply(), /^250 2\.0\.0 Ok: relayed as /);
        assert.equal(await c.cmd('QUIT'), '221 2.0.0 Bye');
        assert.equal(down.received.length, n + 1, 'exactly one message at the next hop');
        const got = down.received[n]!;
        assert.deepEqual(got.to, ['user@localhost']);
        const body = got.raw.toString('latin1');
        assert.match(body, /hello\r\n\.\r\n(\r\n)?MAIL FROM:<admin@localhost>\r\nRCPT TO:<victim@localhost>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n$/);
        assert.doesNotMatch(body, /[^\r]\n|\r[^\n]/, 'no bare LF or CR left');
      });
    });
  }
});

describe('downstream replies', () => {
  it('keep their code and enhanced status; 421 (closing) becomes 451; no reply at all is 451 4.4.1', () => {
    const r = (code: number, text: string) => formatReply(outcomeReply(nextHopAnswer({ rcpt: 'u@x', status: 'deferred', code, text, remote: 'mx:25' }), 's1'));
    assert.equal(r(550, '550 5.1.1 No such user'), '550 5.1.1 Next hop mx:25: No such user');
    assert.equal(r(554, '554 Go away'), '554 5.0.0 Next hop mx:25: Go away');
    assert.equal(r(452, '452 4.2.2 Mailbox full'), '452 4.2.2 Next hop mx:25: Mailbox full');
    assert.equal(r(421, '421 4.3.2 Shutting down'), '451 4.3.2 Next hop mx:25: Shutting down');
    assert.equal(r(450, '450 5.7.1 class mismatch'), '450 4.0.0 Next hop mx:25: class mismatch');
    assert.equal(r(0, 'ETIMEDOUT: Greeting never received'), '451 4.4.1 Next hop not reachable, please try again later (session s1)');
  });
});

describe('portcullis start --relay', () => {
  it('relays to that next hop with no config file', async () => {
    const dir = tempDir();
    const { child, port } = await spawnHost(['--relay', `127.0.0.1:${down.port}`, '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--data-dir', join(dir, 'data')]);
    try {
      const n = down.received.length;
      const info = await send(port, ['user@localhost'], 'Subject: from the command line\r\n\r\nx\r\n');
      assert.match(info.response, /^250 2\.0\.0 Ok: relayed as [0-9A-Z]+ \(next hop: 250 Ok: stored\)$/);
      assert.equal(down.received.length, n + 1);
    } finally {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('relay config', () => {
  it('relay mode without a next hop is a config error naming the path', () => {
    assert.throws(() => configFrom({ delivery: { mode: 'relay' } }, 'x.json'), (e: ConfigError) => e.problems.includes('/delivery/nextHop: relay mode needs a next hop (or start with --relay HOST:PORT)'));
    assert.throws(() => configFrom({ delivery: { nextHop: { host: 'mx', port: 70000 } } }, 'x.json'), (e: ConfigError) => e.problems.includes('/delivery/nextHop/port: must be <= 65535'));
  });

  it('--relay HOST:PORT selects relay mode to that next hop, with the defaults filled in', () => {
    const c = loadConfig(undefined, { relay: 'mx.example.org:2526' });
    assert.equal(c.delivery.mode, 'relay');
    assert.deepEqual(c.delivery.nextHop, { host: 'mx.example.org', port: 2526, secure: false, starttls: 'opportunistic', connectTimeoutMs: 30000, timeoutMs: 120000, poolSize: 5 });
    assert.equal(configFrom({}, 'x').delivery.mode, 'spool');
  });
});
