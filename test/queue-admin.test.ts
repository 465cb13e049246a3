/**
 * `portcullis queue` and `portcullis quarantine`, through the real binary, beside a running
 * host (in-process, so its log can be read) or with none: what the admin sees (exact lines,
 * exit codes), the message arriving at the next hop or never arriving, the spool files
 * gone. A delete that races a delivery under way waits for it: the message is either
 * delivered (and the delete says so) or deleted, never both; a delete survives kill -9.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ControlServer } from '../host/control.js';
import { ROOT } from '../host/paths.js';
import { eventually, mailer, rule, spawnHost, spooled, startTestHost, tempDir, withHost, type TestHost } from './helpers.js';
import { deadPort, startNextHop } from './nexthop.js';

const hop = (port: number) => ({ host: '127.0.0.1', port, starttls: 'off' });
/** Retries far apart: a deferred message waits unless the admin says otherwise. */
const slow = { retryBaseMs: 600_000, retryMaxMs: 600_000 };
const send = async (port: number, to: string[], subject: string, from = 'sender@example.org'): Promise<string> => {
  const { response } = await mailer(port).sendMail({ envelope: { from, to }, raw: `Subject: ${subject}\r\n\r\nbody of ${subject}\r\n` });
  return /(?:queued|relayed) as ([0-9A-Z]+)/.exec(response)![1]!;
};
const stateFile = (dataDir: string, id: string) => join(dataDir, 'spool', 'state', `${id}.json`);
const logged = (h: TestHost, re: RegExp) => h.logs.some((l) => re.test(String(l.msg)));

/** Runs `portcullis ARGS` (the real binary, asynchronously: an in-process host must answer it). */
function portcullis(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((ok) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'portcullis.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => ok({ code, stdout, stderr }));
  });
}

/**
 * A next hop behind a gate: connections are held (no greeting) until `open` pipes them
 * through to the real next hop, or `refuse` drops them. A delivery attempt is "under way"
 * while the gate holds it.
 */
async function gate(target: number) {
  const held: Socket[] = [];
  let opened = false;
  const pipe = (sock: Socket): void => {
    const up = connect(target, '127.0.0.1');
    up.on('error', () => sock.destroy());
    sock.pipe(up).pipe(sock);
  };
  const srv = createServer((sock) => {
    sock.on('error', () => undefined);
    if (opened) pipe(sock);
    else held.push(sock);
  });
  await new Promise<void>((ok) => srv.listen(0, '127.0.0.1', () => ok()));
  return {
    port: (srv.address() as { port: number }).port,
    holding: () => held.length,
    open(): void {
      opened = true;
      for (const s of held.splice(0)) pipe(s);
    },
    refuse(): void {
      for (const s of held.splice(0)) s.destroy();
    },
    close: () => new Promise<void>((ok) => srv.close(() => ok())),
  };
}

describe('portcullis queue, beside a running host', () => {
  it('list shows one line per message (age, sender, recipients, attempts, next attempt, last error) and a count; show gives envelope, header and state', async () => {
    await withHost({ config: { delivery: { nextHop: hop(await deadPort()), queue: slow } } }, async (h) => {
      const empty = await portcullis(['queue', 'list', '--config', h.configFile]);
      assert.deepEqual(empty, { code: 0, stdout: '0 messages in the queue\n', stderr: '' });
      const id = await send(h.port, ['u@localhost', 'v@localhost'], 'first');
      await eventually('the first attempt failed', () => existsSync(stateFile(h.dataDir, id)));
      const list = await portcullis(['queue', 'list', '--data-dir', h.dataDir]);
      assert.equal(list.code, 0, list.stderr);
      const lines = list.stdout.split('\n');
      assert.match(lines[0]!, /^ID +AGE +FROM +TO +ATTEMPTS +NEXT +LAST ERROR$/);
      assert.match(lines[1]!, new RegExp(`^${id}  \\d+s +<sender@example\\.org>  <u@localhost>, <v@localhost>  1 +in (9m|10m) +ESOCKET: connect ECONNREFUSED 127\\.0\\.0\\.1:\\d+$`));
      assert.deepEqual(lines.slice(2), ['1 message in the queue', '']);

      const show = await portcullis(['queue', 'show', id, '--config', h.configFile]);
      assert.equal(show.code, 0, show.stderr);
      const [envelope, header] = show.stdout.split('\n\n');
      assert.match(envelope!, new RegExp([
        `^id:           ${id}`,
        'received:     \\S+Z \\(\\d+s ago\\) from \\[127\\.0\\.0\\.1\\] \\(\\[127\\.0\\.0\\.1\\]:\\d+\\)',
        'from:         <sender@example\\.org>',
        'to:           <u@localhost> \\(pending\\), <v@localhost> \\(pending\\)',
        'size:         \\d+ bytes',
        'attempts:     1',
        'next attempt: \\S+Z \\(in (9m|10m)\\)',
        'last error:   ESOCKET: connect ECONNREFUSED 127\\.0\\.0\\.1:\\d+$',
      ].join('\n')));
      assert.match(header!, new RegExp(`^Received: from \\[127\\.0\\.0\\.1\\] \\(\\[127\\.0\\.0\\.1\\]\\)\\n\\tby localhost \\(Portcullis\\) with ESMTP id ${id}(.|\\n)*\\nSubject: first\\n$`));
    });
  });

  it('retry ID makes a deferred message due now: the running host delivers it without a restart; retry --all does every message', async () => {
    const port = await deadPort();
    await withHost({ config: { delivery: { nextHop: hop(port), queue: slow } } }, async (h) => {
      const ids = [await send(h.port, ['u@localhost'], 'one'), await send(h.port, ['u@localhost'], 'two'), await send(h.port, ['u@localhost'], 'three')];
      await eventually('three attempts failed', () => ids.every((id) => existsSync(stateFile(h.dataDir, id))));
      const next = await startNextHop({ port });
      try {
        const one = await portcullis(['queue', 'retry', ids[0]!, '--config', h.configFile]);
        assert.deepEqual(one, { code: 0, stdout: `retrying ${ids[0]} now\n`, stderr: '' });
        await eventually('the one retried is delivered', () => next.received.length === 1 && !existsSync(join(h.dataDir, 'spool', 'new', `${ids[0]}.msg`)));
        assert.match(next.received[0]!.raw.toString(), /^Subject: one$/m);
        assert.equal(spooled(h.dataDir).length, 2, 'the others wait for their time');
        const all = await portcullis(['queue', 'retry', '--all', '--config', h.configFile]);
        assert.deepEqual(all, { code: 0, stdout: 'retrying 2 messages now\n', stderr: '' });
        await eventually('all delivered', () => next.received.length === 3 && spooled(h.dataDir).length === 0);
        assert.ok(logged(h, new RegExp(`^retrying ${ids[0]} now$`)));
      } finally {
        await next.close();
      }
    });
  });

  it('delete removes a message for good: gone from the spool, logged, never delivered afterwards', async () => {
    const port = await deadPort();
    await withHost({ config: { delivery: { nextHop: hop(port), queue: slow } } }, async (h) => {
      const id = await send(h.port, ['u@localhost', 'v@localhost'], 'unwanted');
      const keep = await send(h.port, ['u@localhost'], 'wanted');
      await eventually('both attempts failed', () => existsSync(stateFile(h.dataDir, id)) && existsSync(stateFile(h.dataDir, keep)));
      const del = await portcullis(['queue', 'delete', id, '--config', h.configFile]);
      const said = `deleted ${id} from the queue (from <sender@example.org> to <u@localhost>, <v@localhost>: not delivered, no bounce)`;
      assert.deepEqual(del, { code: 0, stdout: `${said}\n`, stderr: '' });
      assert.deepEqual(spooled(h.dataDir).map((m) => m.id), [keep]);
      assert.equal(existsSync(stateFile(h.dataDir, id)), false);
      assert.ok(h.logs.some((l) => l.msg === said && l.by === 'administrator'));
      const next = await startNextHop({ port });
      try {
        assert.equal((await portcullis(['queue', 'retry', '--all', '--config', h.configFile])).stdout, 'retrying 1 message now\n');
        await eventually('the other one is delivered', () => next.received.length === 1 && spooled(h.dataDir).length === 0);
        assert.match(next.received[0]!.raw.toString(), /^Subject: wanted$/m);
      } finally {
        await next.close();
      }
      const again = await portcullis(['queue', 'delete', id, '--config', h.configFile]);
      assert.deepEqual(again, { code: 1, stdout: '', stderr: `portcullis queue delete: no message ${id} in the queue\n` });
    });
  });

  it('a delete during a delivery attempt waits for it: deleted if the attempt failed, "was delivered" (exit 1) if it succeeded, never both', async () => {
    const next = await startNextHop();
    const g = await gate(next.port);
    try {
      await withHost({ config: { delivery: { nextHop: hop(g.port), queue: slow } } }, async (h) => {
        // The attempt fails while the delete waits: the message is deleted, nothing delivered.
        const a = await send(h.port, ['u@localhost'], 'fails');
        await eventually('its attempt is under way', () => g.holding() === 1);
        const deleting = portcullis(['queue', 'delete', a, '--config', h.configFile]);
        await eventually('the delete waits for the attempt', () => logged(h, new RegExp(`^delete ${a}: waiting for the delivery attempt under way to end$`)), 10_000);
        g.refuse();
        assert.deepEqual(await deleting, { code: 0, stdout: `deleted ${a} from the queue (from <sender@example.org> to <u@localhost>: not delivered, no bounce)\n`, stderr: '' });
        assert.equal(spooled(h.dataDir).length, 0);

        // The attempt succeeds while the delete waits: delivered once, and the admin is told.
        const b = await send(h.port, ['u@localhost'], 'succeeds');
        await eventually('its attempt is under way', () => g.holding() === 1);
        const late = portcullis(['queue', 'delete', b, '--config', h.configFile]);
        await eventually('the delete waits for the attempt', () => logged(h, new RegExp(`^delete ${b}: waiting`)), 10_000);
        g.open();
        assert.deepEqual(await late, { code: 1, stdout: '', stderr: `portcullis queue delete: ${b} was delivered while the delete waited for its delivery attempt to end\n` });
        assert.deepEqual(next.received.map((m) => /^Subject: (.*)$/m.exec(m.raw.toString())![1]), ['succeeds']);
        assert.equal(spooled(h.dataDir).length, 0);
      });
    } finally {
      await g.close();
      await next.close();
    }
  });

  it('an unknown or malformed ID is a clear error with exit 1; a wrong command line is exit 64', async () => {
    await withHost({ config: { delivery: { queue: slow } } }, async (h) => {
      const cases = [
        [['queue', 'show', 'NOSUCHID'], 'portcullis queue show: no message NOSUCHID in the queue\n'],
        [['queue', 'retry', 'NOSUCHID'], 'portcullis queue retry: no message NOSUCHID in the queue\n'],
        [['queue', 'delete', '../../status.json'], 'portcullis queue delete: no message ../../status.json in the queue\n'],
        [['quarantine', 'release', 'NOSUCHID'], 'portcullis quarantine release: no message NOSUCHID in quarantine\n'],
        [['quarantine', 'delete', 'NOSUCHID'], 'portcullis quarantine delete: no message NOSUCHID in quarantine\n'],
      ] as const;
      // Independent commands, all at once (the host answers them in turn).
      const [usage, ...results] = await Promise.all([portcullis(['queue', 'delete', '--config', h.configFile]), ...cases.map(([args]) => portcullis([...args, '--config', h.configFile]))]);
      cases.forEach(([args, stderr], i) => assert.deepEqual(results[i], { code: 1, stdout: '', stderr }, args.join(' ')));
      assert.ok(existsSync(join(h.dataDir, 'status.json')));
      assert.equal(usage.code, 64);
      assert.match(usage.stderr, /^portcullis queue: give the ID to delete\nusage:\n  portcullis queue list \| show ID \| retry ID\|--all \| delete ID/);
    });
  });

  it('a second host on the same data dir is refused: two queues would deliver the same files', async () => {
    await withHost({}, async (h) => {
      const second = await portcullis(['start', '--config', h.configFile]);
      assert.equal(second.code, 1);
      assert.equal(second.stderr, `portcullis: the data dir ${h.dataDir} is in use by another Portcullis host (pid ${process.pid}): stop it first, or give this one its own dataDir\n`);
    });
  });
});

describe('portcullis queue, with no host running', () => {
  it('retry and delete act on the spool directly; the next start delivers what is due at once and never what was deleted, even after kill -9', async () => {
    const dir = tempDir();
    const dataDir = join(dir, 'data');
    const config = (queue: Record<string, unknown>) => {
      const file = join(dir, `config-${Object.keys(queue).length}.json`);
      writeFileSync(file, JSON.stringify({ listen: ['127.0.0.1:0'], admin: { listen: '127.0.0.1:0' }, dataDir, reverseDns: false, watch: false, rules: { builtin: false }, delivery: { nextHop: hop(port), queue } }));
      return file;
    };
    const kill9 = async (c: ChildProcess) => {
      c.kill('SIGKILL');
      await new Promise((r) => c.once('exit', r));
    };
    const port = await deadPort();
    const cfg = config(slow);
    try {
      const first = await spawnHost(['--config', cfg]);
      const due = await send(first.port, ['u@localhost'], 'retried');
      const gone = await send(first.port, ['u@localhost'], 'deleted');
      await eventually('the attempts failed', () => existsSync(stateFile(dataDir, due)) && existsSync(stateFile(dataDir, gone)));
      await kill9(first.child); // leaves its control socket behind, stale
      assert.ok(existsSync(join(dataDir, 'control.sock')));
      const del = await portcullis(['queue', 'delete', gone, '--config', cfg]);
      assert.deepEqual(del, { code: 0, stdout: `deleted ${gone} from the queue (from <sender@example.org> to <u@localhost>: not delivered, no bounce)\n`, stderr: '' });
      assert.equal(existsSync(join(dataDir, 'control.sock')), false, 'the command let go of the data dir');

      // A message the journal holds (under a minute old), deleted, and the host killed at once.
      const second = await spawnHost(['--config', config({ ...slow, hold: true })]);
      const young = await send(second.port, ['u@localhost'], 'deleted young');
      assert.equal((await portcullis(['queue', 'delete', young, '--config', cfg])).code, 0);
      await kill9(second.child);

      const retry = await portcullis(['queue', 'retry', due, '--config', cfg]);
      assert.deepEqual(retry, { code: 0, stdout: `${due} is due now: the host delivers it when it starts\n`, stderr: '' });
      const next = await startNextHop({ port });
      const third = await spawnHost(['--config', cfg]);
      try {
        await eventually('the retried one is delivered at once (not in 10 minutes)', () => next.received.length === 1, 10_000);
        assert.match(next.received[0]!.raw.toString(), /^Subject: retried$/m);
        await eventually('the spool is empty', () => spooled(dataDir).length === 0);
        assert.equal((await portcullis(['queue', 'list', '--config', cfg])).stdout, '0 messages in the queue\n');
        assert.equal(next.received.length, 1, 'the deleted ones never arrive');
      } finally {
        third.child.kill('SIGTERM');
        await new Promise((r) => third.child.once('exit', r));
        await next.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the data dir lock', () => {
  it('a host that starts while a queue command holds the data dir waits for it, then starts', async () => {
    const dir = tempDir();
    const dataDir = join(dir, 'data');
    mkdirSync(dataDir);
    const cfg = join(dir, 'config.json');
    writeFileSync(cfg, JSON.stringify({ listen: ['127.0.0.1:0'], admin: { listen: '127.0.0.1:0' }, dataDir, reverseDns: false, watch: false, rules: { builtin: false } }));
    // This test process plays the command that holds the data dir.
    const lock = await ControlServer.acquire(dataDir, 'command', 0);
    assert.ok(lock instanceof ControlServer);
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'portcullis.js'), 'start', '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await eventually('the host waits', () => out.includes(`waiting for the portcullis command (pid ${process.pid}) working on the data dir`), 20_000);
      assert.doesNotMatch(out, /listening on/);
      await lock.close();
      await eventually('the host starts once the command is done', () => /listening on 127\.0\.0\.1:\d+/.test(out), 20_000);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      await lock.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('portcullis quarantine', () => {
  const rules = { 'q.ts': rule('screen', `{ message: (ev) => /hold me/.test(ev.message.headers.find(([n]) => n === 'Subject')?.[1] ?? '') ? quarantine({ reason: 'looks-odd' }) : next() }`) };

  it('list and show give the rule and reason; release delivers it with its original envelope; delete removes it', async () => {
    const next = await startNextHop();
    try {
      await withHost({ rules, config: { delivery: { nextHop: hop(next.port), queue: slow } } }, async (h) => {
        const a = await send(h.port, ['u@localhost', 'v@localhost'], 'hold me 1', 'orig@example.org');
        const b = await send(h.port, ['w@localhost'], 'hold me 2');
        const list = await portcullis(['quarantine', 'list', '--config', h.configFile]);
        assert.equal(list.code, 0, list.stderr);
        const lines = list.stdout.split('\n');
        assert.match(lines[0]!, /^ID +AGE +FROM +TO +RULE +REASON$/);
        assert.match(lines[1]!, new RegExp(`^${a}  \\d+s +<orig@example\\.org> +<u@localhost>, <v@localhost>  screen  looks-odd$`));
        assert.match(lines[2]!, new RegExp(`^${b}  \\d+s +<sender@example\\.org>  <w@localhost> +screen  looks-odd$`));
        assert.deepEqual(lines.slice(3), ['2 messages in quarantine', '']);
        const show = await portcullis(['quarantine', 'show', a, '--config', h.configFile]);
        assert.match(show.stdout, new RegExp(`^id:           ${a}\nreceived: .*\nfrom:         <orig@example\\.org>\nto:           <u@localhost>, <v@localhost>\nquarantined:  rule screen: looks-odd\nsize:         \\d+ bytes\n\nReceived: (.|\\n)*\nSubject: hold me 1\n$`));
        const quarantined = spooled(h.dataDir, 'quarantine')[0]!.eml;

        const release = await portcullis(['quarantine', 'release', a, '--config', h.configFile]);
        assert.deepEqual(release, { code: 0, stdout: `released ${a} from quarantine (rule screen: looks-odd): queued for <u@localhost>, <v@localhost>\n`, stderr: '' });
        await eventually('delivered', () => next.received.length === 1 && spooled(h.dataDir).length === 0);
        const got = next.received[0]!;
        assert.deepEqual([got.from, got.to], ['orig@example.org', ['u@localhost', 'v@localhost']]);
        assert.ok(got.raw.equals(quarantined), 'the message as it was quarantined, byte for byte');
        assert.ok(logged(h, new RegExp(`^released ${a} from quarantine`)));

        const del = await portcullis(['quarantine', 'delete', b, '--config', h.configFile]);
        assert.deepEqual(del, { code: 0, stdout: `deleted ${b} from quarantine (from <sender@example.org> to <w@localhost>)\n`, stderr: '' });
        assert.deepEqual(readdirSync(join(h.dataDir, 'quarantine', 'new')), []);
        assert.equal((await portcullis(['quarantine', 'list', '--config', h.configFile])).stdout, '0 messages in quarantine\n');
        assert.equal(next.received.length, 1);
      });
    } finally {
      await next.close();
    }
  });

  it('with no host running, release moves it into the spool, and the next start delivers it', async () => {
    const next = await startNextHop();
    const h = await startTestHost({ rules, config: { delivery: { nextHop: hop(next.port) } } });
    try {
      const id = await send(h.port, ['u@localhost'], 'hold me');
      await h.host.close();
      const release = await portcullis(['quarantine', 'release', id, '--config', h.configFile]);
      assert.deepEqual(release, { code: 0, stdout: `released ${id} from quarantine (rule screen: looks-odd): queued for <u@localhost>; the host delivers it when it starts\n`, stderr: '' });
      const show = await portcullis(['queue', 'show', id, '--config', h.configFile]);
      assert.match(show.stdout, /\nreleased:     from quarantine, rule screen: looks-odd\n/);
      await withHost({ rules, config: { dataDir: h.dataDir, delivery: { nextHop: hop(next.port) } } }, async () => {
        await eventually('delivered', () => next.received.length === 1);
      });
    } finally {
      rmSync(h.dir, { recursive: true, force: true });
      await next.close();
    }
  });
});
