/**
 * Spool mode's queue: spooled mail reaches the next hop (or the mailbox folder when there
 * is none), is retried with backoff while the next hop is down, bounced when refused or too
 * old (never to the null sender), and picked up again after a restart. A full disk never
 * costs a message.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { eventually, mailer, mountTmpfs, spooled, startTestHost, splitFields, tempDir, unmountTmpfs, withHost } from './helpers.js';
import { deadPort, startNextHop } from './nexthop.js';

const hop = (port: number) => ({ host: '127.0.0.1', port, starttls: 'off' });
const fast = { retryBaseMs: 20, retryMaxMs: 200 };
const send = (port: number, to: string[], raw: string | Buffer, from = 'a@example.org') => mailer(port).sendMail({ envelope: { from, to }, raw });
const mailbox = (dataDir: string) => {
  const dir = join(dataDir, 'mailbox', 'new');
  return existsSync(dir) ? readdirSync(dir).sort().map((f) => readFileSync(join(dir, f))) : [];
};
const stateOf = (dataDir: string, id: string) => JSON.parse(readFileSync(join(dataDir, 'spool', 'state', `${id}.json`), 'utf8')) as { attempts: number; lastError: string; done: string[] };

describe('spool queue', () => {
  it('without a next hop delivers into the mailbox folder (Maildir style) and empties the spool', async () => {
    await withHost({ config: { delivery: {} } }, async (h) => {
      const raw = 'Subject: local\r\n\r\nhello\r\n';
      const info = await send(h.port, ['u@localhost', 'v@localhost'], raw);
      assert.match(info.response, /^250 2\.0\.0 Ok: queued as [0-9A-Z]+$/);
      await eventually('delivered to the mailbox', () => mailbox(h.dataDir).length === 1 && spooled(h.dataDir).length === 0);
      const { fields, rest } = splitFields(mailbox(h.dataDir)[0]!, 4);
      assert.deepEqual(fields.slice(0, 3), ['Return-Path: <a@example.org>\r\n', 'Delivered-To: u@localhost\r\n', 'Delivered-To: v@localhost\r\n']);
      assert.match(fields[3]!, /^Received: /);
      assert.equal(rest.toString(), raw);
      assert.deepEqual(readdirSync(join(h.dataDir, 'spool', 'state')), []);
    });
  });

  it('delivers to the next hop byte-identical; retries with backoff while it is down; nothing is lost', async () => {
    const port = await deadPort();
    await withHost({ config: { delivery: { nextHop: hop(port), queue: fast } } }, async (h) => {
      const raw = Buffer.from('Subject: wait for it\r\n\r\n8-bit \u00e9t\u00e9 and a long line ' + 'z'.repeat(1200) + '\r\n', 'utf8');
      const { response } = await send(h.port, ['u@localhost'], raw);
      const id = /queued as ([0-9A-Z]+)/.exec(response)![1]!;
      await eventually('two failed attempts recorded', () => existsSync(join(h.dataDir, 'spool', 'state', `${id}.json`)) && stateOf(h.dataDir, id).attempts >= 2);
      assert.match(stateOf(h.dataDir, id).lastError, /ECONNREFUSED|ESOCKET|ECONNECTION/);
      assert.equal(spooled(h.dataDir).length, 1, 'still in the spool');
      const next = await startNextHop({ port });
      try {
        await eventually('delivered once the next hop is up', () => next.received.length === 1 && spooled(h.dataDir).length === 0, 5000);
        const { rest } = splitFields(next.received[0]!.raw, 1);
        assert.ok(rest.equals(raw), 'byte-identical apart from the Received header');
        assert.ok(h.logs.some((l) => /^deferred [0-9A-Z]+ for <u@localhost>: .*; retry in \d+ s$/.test(String(l.msg))));
        assert.ok(h.logs.some((l) => new RegExp(`^delivered ${id} to <u@localhost> via 127\\.0\\.0\\.1:${port}: 250 Ok: stored$`).test(String(l.msg))));
      } finally {
        await h.host.close();
        await next.close();
      }
    });
  });

  it('bounces a refused recipient to the sender at once, and never bounces a bounce', async () => {
    const next = await startNextHop({ rcpt: (a) => (a.startsWith('nosuch@') || a === 'gone@example.org' ? '550 5.1.1 No such user' : null) });
    try {
      await withHost({ config: { delivery: { nextHop: hop(next.port), queue: fast } } }, async (h) => {
        await send(h.port, ['nosuch@localhost', 'u@localhost'], 'Subject: half\r\n\r\nx\r\n', 'sender@example.org');
        await eventually('message and bounce delivered', () => next.received.length === 2 && spooled(h.dataDir).length === 0);
        const bounce = next.received.find((m) => m.from === '')!;
        assert.deepEqual(bounce.to, ['sender@example.org']);
        assert.match(bounce.raw.toString(), /^Final-Recipient: rfc822; nosuch@localhost\r\nAction: failed\r\nStatus: 5\.1\.1\r\n/m);
        // A bounce to a sender that does not exist: refused, and not bounced again.
        await send(h.port, ['nosuch@localhost'], 'Subject: loop?\r\n\r\nx\r\n', 'gone@example.org');
        await eventually('the bounce was given up', () => h.logs.some((l) => /no bounce: the sender is <>/.test(String(l.msg))) && spooled(h.dataDir).length === 0);
        assert.equal(next.received.length, 2);
      });
    } finally {
      await next.close();
    }
  });

  it('bounces what is still undeliverable after maxAgeHours', async () => {
    const next = await startNextHop();
    try {
      const routes = { 'down.example': hop(await deadPort()) };
      await withHost({ config: { relayDomains: ['down.example'], delivery: { nextHop: hop(next.port), routes, queue: { ...fast, maxAgeHours: 0.0001 } } } }, async (h) => {
        await send(h.port, ['u@down.example'], 'Subject: old\r\n\r\nx\r\n', 'sender@example.org');
        await eventually('the bounce reaches the sender', () => next.received.length === 1 && spooled(h.dataDir).length === 0);
        const text = next.received[0]!.raw.toString();
        assert.match(text, /still undeliverable after 0\.0001 hours/);
        assert.match(text, /^Final-Recipient: rfc822; u@down\.example\r\nAction: failed\r\nStatus: 4\.4\.7\r\n/m);
      });
    } finally {
      await next.close();
    }
  });

  it('closing the host ends a delivery stuck on a silent next hop at once; the message stays for the next start', async () => {
    const { createServer } = await import('node:net');
    const silent = createServer(() => undefined); // accepts, never greets
    await new Promise<void>((ok) => silent.listen(0, '127.0.0.1', () => ok()));
    const h = await startTestHost({ config: { delivery: { nextHop: hop((silent.address() as { port: number }).port) } } });
    try {
      await send(h.port, ['u@localhost'], 'Subject: stuck\r\n\r\nx\r\n');
      await eventually('the attempt is under way', () => new Promise<boolean>((ok) => silent.getConnections((_e, n) => ok(n > 0))));
      const t0 = Date.now();
      await h.host.close();
      assert.ok(Date.now() - t0 < 5000, `closed in ${Date.now() - t0} ms, not after the 30 s greeting timeout`);
      assert.equal(spooled(h.dataDir).length, 1, 'the message waits in the spool');
    } finally {
      silent.close();
      rmSync(h.dir, { recursive: true, force: true });
    }
  });

  it('picks up what the spool holds when the host starts', async () => {
    const h = await startTestHost({ config: { delivery: { queue: { hold: true } } } });
    const dataDir = h.dataDir;
    const keep = tempDir();
    try {
      await send(h.port, ['u@localhost'], 'Subject: one\r\n\r\n1\r\n');
      await send(h.port, ['u@localhost'], 'Subject: two\r\n\r\n2\r\n');
      await h.host.close();
      assert.equal(spooled(dataDir).length, 2, 'held in the spool');
      // The same data directory, queue running.
      const moved = join(keep, 'data');
      execFileSync('cp', ['-a', dataDir, moved]);
      await withHost({ config: { dataDir: moved, delivery: {} } }, async () => {
        await eventually('both delivered', () => mailbox(moved).length === 2 && spooled(moved).length === 0);
      });
    } finally {
      rmSync(h.dir, { recursive: true, force: true });
      rmSync(keep, { recursive: true, force: true });
    }
  });

  it('a mailbox folder that cannot be written keeps the message in the spool until it can', async () => {
    await withHost({ config: { delivery: { queue: fast } } }, async (h) => {
      const tmp = join(h.dataDir, 'mailbox', 'tmp');
      rmSync(tmp, { recursive: true });
      writeFileSync(tmp, 'not a directory');
      const { response } = await send(h.port, ['u@localhost'], 'Subject: x\r\n\r\nbody\r\n');
      const id = /queued as ([0-9A-Z]+)/.exec(response)![1]!;
      await eventually('a failed attempt recorded', () => existsSync(join(h.dataDir, 'spool', 'state', `${id}.json`)));
      assert.match(stateOf(h.dataDir, id).lastError, /^mailbox folder: ENOTDIR/);
      assert.equal(spooled(h.dataDir).length, 1);
      rmSync(tmp);
      mkdirSync(tmp);
      await eventually('delivered', () => mailbox(h.dataDir).length === 1 && spooled(h.dataDir).length === 0);
    });
  });

  it('a full disk: the queue keeps the message when local delivery fails (tmpfs), relay mode answers 452 with nothing partial', async (t) => {
    // 1 MiB: under the loaded suite the host's own files took tens of KB more than at rest.
    const mnt = mountTmpfs(1024);
    if (!mnt) return void t.skip('cannot mount a tmpfs here (needs root); the ENOTDIR test above covers the write-failure path');
    const next = await startNextHop({ rcpt: (a) => (a === 'later@localhost' ? '451 4.3.0 Try later' : null) });
    try {
      // Spool mode, no next hop: the spool copy fits, the mailbox copy does not.
      const dataDir = join(mnt, 'data');
      const h = await startTestHost({ config: { dataDir, delivery: { queue: fast } } });
      // Sized from what is free once the host (and its SQLite files) started: the spool takes
      // it twice for a few seconds (the file and its journal record), a third copy in the
      // mailbox does not fit.
      const free = statfsSync(mnt).bavail * statfsSync(mnt).bsize;
      const body = `Subject: big\r\n\r\n${`${'y'.repeat(76)}\r\n`.repeat(Math.floor((free * 0.4) / 78))}`;
      try {
        const { response } = await send(h.port, ['u@localhost'], body);
        const id = /queued as ([0-9A-Z]+)/.exec(response)![1]!;
        await eventually('a failed attempt recorded', () => existsSync(join(dataDir, 'spool', 'state', `${id}.json`)));
        assert.match(stateOf(dataDir, id).lastError, /ENOSPC|no space/);
        assert.equal(spooled(dataDir).length, 1, 'the message is still in the spool');
        assert.deepEqual(readdirSync(join(dataDir, 'mailbox', 'tmp')), [], 'no partial mailbox file');
        assert.deepEqual(readdirSync(join(dataDir, 'mailbox', 'new')), []);
        // The host keeps serving, and mail that fits flows again.
        assert.match((await send(h.port, ['u@localhost'], 'Subject: small\r\n\r\nfits\r\n')).response, /^250 /);
      } finally {
        await h.close();
        rmSync(dataDir, { recursive: true, force: true });
      }
      // Relay mode: one recipient accepted, one deferred, and no room to keep the deferred copy.
      const filler = join(mnt, 'filler');
      const h2 = await startTestHost({ config: { dataDir: join(mnt, 'data2'), delivery: { mode: 'relay', nextHop: hop(next.port), queue: fast } } });
      try {
        const fs = statfsSync(mnt);
        writeFileSync(filler, Buffer.alloc(Math.max(0, fs.bavail * fs.bsize - 64 * 1024))); // room for small mail only
        const err = await send(h2.port, ['now@localhost', 'later@localhost'], body).then(() => 'no error', (e: { response?: string }) => e.response);
        assert.match(err ?? '', /^452 4\.3\.1 Insufficient system storage, please try again later \(session [a-z0-9]+\)$/);
        assert.deepEqual(readdirSync(join(mnt, 'data2', 'spool', 'tmp')), []);
        assert.deepEqual(readdirSync(join(mnt, 'data2', 'spool', 'new')), []);
        rmSync(filler);
        assert.match((await send(h2.port, ['now@localhost'], 'Subject: small\r\n\r\nfits\r\n')).response, /^250 2\.0\.0 Ok: relayed as /);
      } finally {
        await h2.close();
      }
    } finally {
      await next.close();
      unmountTmpfs(mnt);
    }
  });
});
