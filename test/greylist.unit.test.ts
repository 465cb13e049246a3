/** The greylist rule through the public harness, with the fake clock. */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ROOT } from '../host/paths.js';
import { fakeDns, loadRule, type Harness } from '../host/testing/harness.js';

const GREY = '421 4.7.1 Greylisted: please try again later';
let h: Harness;
before(async () => {
  h = await loadRule(join(ROOT, 'rules', 'greylist.ts'));
});
after(() => h.close());

let n = 0;
/** One attempt of a fresh or given triplet: the RCPT reply (null = accepted). */
async function attempt(ip: string, from: string, to: string, ptr: string | null = null): Promise<string | null> {
  const s = await h.connect({ ip, ptr, helo: 'mx.example.net' });
  await s.mail(from);
  return (await s.rcpt(to)).reply;
}
const fresh = () => `sender${++n}@example.net`;

describe('greylist', () => {
  it('tempfails a new triplet, still tempfails a retry inside 5 minutes, passes one after', async () => {
    const from = fresh();
    assert.equal(await attempt('192.0.2.10', from, 'user@localhost'), GREY);
    h.clock.advance(2 * 60_000);
    assert.equal(await attempt('192.0.2.10', from, 'user@localhost'), GREY);
    h.clock.advance(3 * 60_000 + 1000);
    assert.equal(await attempt('192.0.2.10', from, 'user@localhost'), null);
    assert.ok(h.logs.some((l) => typeof l.msg === 'string' && l.msg.includes('passes from now on')));
  });

  it('the first message that passes carries X-Grey-Report: how long it was held, the key, when it started', async () => {
    const from = fresh();
    const started = new Date(h.clock.now()).toISOString();
    await attempt('192.0.2.13', from, 'user@localhost');
    h.clock.advance(7 * 60_000);
    const s = await h.connect({ ip: '192.0.2.13', helo: 'mx.example.net' });
    await s.mail(from);
    assert.deepEqual((await s.rcpt('user@localhost')).headers, [['X-Grey-Report', `age=420s; key=ip-network; triplet=192.0.2|${from}|user@localhost; started=${started}`]]);
    assert.deepEqual((await s.rcpt('user@localhost')).headers, [], 'only the first');
  });

  it('with drop off, the tempfail is 450 for that recipient and the session goes on', async () => {
    const h450 = await loadRule(join(ROOT, 'rules', 'greylist.ts'), { options: { drop: false } });
    try {
      const s = await h450.connect({ ip: '192.0.2.14', helo: 'mx.example.net' });
      await s.mail(fresh());
      assert.equal((await s.rcpt('user@localhost')).reply, '450 4.7.1 Greylisted: please try again later');
      assert.equal((await s.rcpt('other@localhost')).reply, '450 4.7.1 Greylisted: please try again later');
    } finally {
      await h450.close();
    }
  });

  it('a triplet that passed stays known for passDays after its last message, then starts over', async () => {
    const from = fresh();
    await attempt('192.0.2.11', from, 'user@localhost');
    h.clock.advance(6 * 60_000);
    assert.equal(await attempt('192.0.2.11', from, 'user@localhost'), null);
    h.clock.advance(29 * 86_400_000);
    assert.equal(await attempt('192.0.2.11', from, 'user@localhost'), null, 'known after 29 days');
    h.clock.advance(29 * 86_400_000);
    assert.equal(await attempt('192.0.2.11', from, 'user@localhost'), null, 'each message keeps it known');
    h.clock.advance(31 * 86_400_000);
    assert.equal(await attempt('192.0.2.11', from, 'user@localhost'), GREY, 'forgotten after 30 quiet days');
  });

  it('a first attempt not retried within pendingHours is forgotten: the next one is new again', async () => {
    const from = fresh();
    await attempt('192.0.2.12', from, 'user@localhost');
    h.clock.advance(5 * 3_600_000);
    assert.equal(await attempt('192.0.2.12', from, 'user@localhost'), GREY);
  });

  it('the default key is the client network: a retry from another address of the same /24 passes', async () => {
    const from = fresh();
    await attempt('192.0.2.20', from, 'user@localhost');
    h.clock.advance(6 * 60_000);
    assert.equal(await attempt('192.0.2.21', from, 'user@localhost'), null);
    assert.equal(await attempt('198.51.100.21', from, 'user@localhost'), GREY, 'another network is another triplet');
  });

  it('for IPv6 the network is the /64, however the address is written', async () => {
    const from = fresh();
    await attempt('2001:db8:1:2::10', from, 'user@localhost');
    h.clock.advance(6 * 60_000);
    assert.equal(await attempt('2001:0db8:0001:0002:ffff::1', from, 'user@localhost'), null);
    assert.equal(await attempt('2001:db8:1:3::10', from, 'user@localhost'), GREY);
  });

  it('each recipient and each sender is its own triplet', async () => {
    const from = fresh();
    await attempt('192.0.2.30', from, 'user@localhost');
    h.clock.advance(6 * 60_000);
    assert.equal(await attempt('192.0.2.30', from, 'other@localhost'), GREY);
    assert.equal(await attempt('192.0.2.30', fresh(), 'user@localhost'), GREY);
  });

  it('the retry that passes marks the client well-behaved for passDays; later sessions see it and write nothing more', async () => {
    const from = fresh();
    const ip = '192.0.2.50';
    await attempt(ip, from, 'user@localhost');
    h.clock.advance(6 * 60_000);
    const s = await h.connect({ ip, helo: 'mx.example.net' });
    assert.equal(s.connected.wellBehaved, null);
    await s.mail(from);
    const passed = await s.rcpt('user@localhost');
    assert.equal(passed.reply, null);
    assert.deepEqual(passed.wellBehaved, { ttlSeconds: 30 * 86400, rule: 'greylist' });
    assert.equal((await s.rcpt('user@localhost')).wellBehaved, null, 'marked from the next phase on: no store write per RCPT');
    assert.equal(h.store.wellBehaved(ip, h.clock.now()), true);
    // A later session reads the mark at connect (client.wellBehaved), so the known triplet does not write it again.
    h.clock.advance(29 * 86_400_000);
    const later = await h.connect({ ip, helo: 'mx.example.net' });
    await later.mail(from);
    const r = await later.rcpt('user@localhost');
    assert.deepEqual([r.reply, r.wellBehaved], [null, null]);
  });

  it('a known triplet renews a mark that ran out (the triplet outlives it: each message keeps it known)', async () => {
    const from = fresh();
    const ip = '192.0.2.51';
    await attempt(ip, from, 'user@localhost');
    h.clock.advance(6 * 60_000);
    assert.equal(await attempt(ip, from, 'user@localhost'), null); // passes and marks, until +30 days
    h.clock.advance(20 * 86_400_000);
    assert.equal(await attempt(ip, from, 'user@localhost'), null); // known until +50 days; the mark is not renewed
    h.clock.advance(11 * 86_400_000);
    assert.equal(h.store.wellBehaved(ip, h.clock.now()), false);
    const s = await h.connect({ ip, helo: 'mx.example.net' });
    await s.mail(from);
    const r = await s.rcpt('user@localhost');
    assert.deepEqual([r.reply, r.wellBehaved], [null, { ttlSeconds: 30 * 86400, rule: 'greylist' }]);
  });

  it('a greylisted attempt marks nothing', async () => {
    const s = await h.connect({ ip: '192.0.2.52', helo: 'mx.example.net' });
    await s.mail(fresh());
    const r = await s.rcpt('user@localhost');
    assert.deepEqual([r.reply, r.wellBehaved], [GREY, null]);
  });

  it('never greylists an authenticated client', async () => {
    const s = await h.connect({ ip: '192.0.2.40', helo: 'laptop.example.net' });
    await s.auth('alice');
    await s.mail(fresh());
    assert.equal((await s.rcpt('user@localhost')).reply, null);
  });
});

describe('greylist keyed on the SPF-validated sender domain', () => {
  let hs: Harness;
  before(async () => {
    const dns = { ...fakeDns.spf('big.example', 'v=spf1 ip4:192.0.2.0/24 ip4:198.51.100.0/24 -all'), ...fakeDns.spf('open.example', 'v=spf1 ?all') };
    hs = await loadRule(join(ROOT, 'rules', 'greylist.ts'), { options: { key: 'spf-domain' }, dns });
  });
  after(() => hs.close());

  async function tryFrom(ip: string, from: string): Promise<{ reply: string | null; headers: [string, string][] }> {
    const s = await hs.connect({ ip, helo: 'mx.example.net' });
    await s.mail(from);
    const r = await s.rcpt('user@localhost');
    return { reply: r.reply, headers: r.headers };
  }

  it("a retry from another of the sender's SPF networks passes: the domain is the client part of the triplet", async () => {
    assert.equal((await tryFrom('192.0.2.50', 'news@big.example')).reply, GREY);
    hs.clock.advance(6 * 60_000);
    const retry = await tryFrom('198.51.100.50', 'news@big.example');
    assert.equal(retry.reply, null);
    assert.match(retry.headers[0]![1], /^age=360s; key=spf-domain; triplet=big\.example\|news@big\.example\|user@localhost; /);
  });

  it('without an SPF pass the client network is the key, as with ip-network', async () => {
    assert.equal((await tryFrom('203.0.113.50', 'news@open.example')).reply, GREY, 'neutral is no pass');
    hs.clock.advance(6 * 60_000);
    assert.equal((await tryFrom('198.51.100.60', 'news@open.example')).reply, GREY, 'another network is another triplet');
    const retry = await tryFrom('203.0.113.51', 'news@open.example');
    assert.equal(retry.reply, null, 'the same /24 passes');
    assert.match(retry.headers[0]![1], /; key=spf-domain; triplet=203\.0\.113\|news@open\.example\|/);
  });
});

describe('greylist with content (smtpf grey-content)', () => {
  let hc: Harness;
  before(async () => {
    hc = await loadRule(join(ROOT, 'rules', 'greylist.ts'), { options: { content: true } });
  });
  after(() => hc.close());

  /** One message from `ip` with `body`: the reply at the end of the message (null = accepted) and the headers added. */
  async function send(ip: string, body: string): Promise<{ reply: string | null; headers: [string, string][] }> {
    const s = await hc.connect({ ip, helo: 'mx.example.net' });
    await s.mail('news@example.net');
    assert.equal((await s.rcpt('user@localhost')).reply, null, 'RCPT is not where content mode decides');
    const m = await s.message({ headers: { From: 'news@example.net', Subject: 'hello' }, body });
    return { reply: m.reply, headers: m.accepted?.headers ?? [] };
  }

  it('tempfails a new client\'s first message; only that same message, sent again after the window, passes; then the client does', async () => {
    const started = new Date(hc.clock.now()).toISOString();
    assert.equal((await send('203.0.113.5', 'original text\r\n')).reply, GREY);
    hc.clock.advance(2 * 60_000);
    assert.equal((await send('203.0.113.5', 'original text\r\n')).reply, GREY, 'too early');
    hc.clock.advance(4 * 60_000);
    assert.equal((await send('203.0.113.5', 'a new random text\r\n')).reply, GREY, 'a changed body is not a retry');
    const back = await send('203.0.113.5', 'original text\r\n');
    assert.equal(back.reply, null);
    assert.deepEqual(back.headers.filter(([n]) => n === 'X-Grey-Report').map(([, v]) => v.replace(/content=\w+/, 'content=H')), [`age=360s; key=ip-network; client=203.0.113; content=H; started=${started}`]);
    assert.equal((await send('203.0.113.5', 'anything else\r\n')).reply, null, 'the client is known now');
  });

  it('the message that passes marks the client well-behaved', async () => {
    const s = await hc.connect({ ip: '198.51.100.6', helo: 'mx.example.net' });
    await s.mail('news@example.net');
    await s.rcpt('user@localhost');
    assert.equal((await s.message({ headers: { Subject: 'hello' }, body: 'text\r\n' })).reply, GREY);
    hc.clock.advance(6 * 60_000);
    const again = await hc.connect({ ip: '198.51.100.6', helo: 'mx.example.net' });
    await again.mail('news@example.net');
    await again.rcpt('user@localhost');
    const m = await again.message({ headers: { Subject: 'hello' }, body: 'text\r\n' });
    assert.deepEqual([m.reply, m.wellBehaved], [null, { ttlSeconds: 30 * 86400, rule: 'greylist' }]);
  });
});
