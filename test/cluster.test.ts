/**
 * `portcullis start --processes 2`: the real CLI as a child process (a primary and two
 * worker processes sharing the listening socket), real SMTP clients, a real next hop.
 * Linux's node:cluster hands connections to the workers round-robin, so consecutive
 * connections reach both.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { cli, eventually, mailer, RawSmtp, spawnHost, tempDir } from './helpers.js';
import { deadPort, startNextHop } from './nexthop.js';

/** The primary's line once every worker serves: the port, and the workers' pids. */
const CLUSTER_READY = /listening on 127\.0\.0\.1:(\d+) with \d+ processes \(pids ([\d, ]+)\)/;

interface Cluster {
  dir: string;
  cfg: string;
  child: ChildProcess;
  port: number;
  pids: number[];
  output: () => string;
  /** SIGTERM to the primary; resolves with its exit code. */
  stop(): Promise<number | null>;
}

async function startCluster(config: Record<string, unknown>, processes = 2, dir = tempDir()): Promise<Cluster> {
  const cfg = join(dir, 'config.json');
  writeFileSync(cfg, JSON.stringify({ listen: ['127.0.0.1:0'], admin: { listen: '127.0.0.1:0' }, dataDir: join(dir, 'data'), reverseDns: false, watch: false, ...config }));
  const { child, port, output } = await spawnHost(['--config', cfg, '--processes', String(processes)], ...(processes > 1 ? [CLUSTER_READY] : []));
  const pids = CLUSTER_READY.exec(output())?.[2]!.split(', ').map(Number) ?? [];
  return {
    dir, cfg, child, port, pids, output,
    stop: () => new Promise((ok) => {
      if (child.exitCode !== null) return ok(child.exitCode);
      child.once('exit', (code) => ok(code));
      child.kill('SIGTERM');
    }),
  };
}

/** The log lines (JSON) a process wrote. */
const logLines = (c: Cluster): { pid: number; msg: string; rule?: string }[] =>
  c.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { pid: number; msg: string });

describe('portcullis start --processes 2', () => {
  it('refuses a --processes that is not a count from 1 or auto, exit 64', () => {
    const dir = tempDir();
    try {
      for (const bad of ['0', 'two', '1.5']) {
        const r = cli(dir, ['start', '--processes', bad]);
        assert.equal(r.status, 64);
        assert.equal(r.stderr.split('\n')[0], `portcullis start: --processes: a number from 1 to 256, or auto (one per core), not "${bad}"`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a rule that does not load stops the start: the worker says why, the primary exits 78 and leaves no worker behind', () => {
    const dir = tempDir();
    try {
      mkdirSync(join(dir, 'rules'));
      writeFileSync(join(dir, 'rules', 'broken.ts'), 'export default {');
      writeFileSync(join(dir, 'config.json'), JSON.stringify({ listen: ['127.0.0.1:0'], admin: { listen: null }, dataDir: join(dir, 'data'), watch: false, rules: { builtin: false, dirs: [join(dir, 'rules')] } }));
      const r = cli(dir, ['start', '--config', join(dir, 'config.json'), '--processes', '2']);
      assert.equal(r.status, 78, r.stderr);
      assert.match(r.stderr, /broken\.ts/);
      assert.match(r.stderr, /^portcullis: worker \d \(pid \d+\) exited with 78 while starting; every worker stopped$/m);
      // The data dir is free again: its lock went with the primary.
      assert.equal(cli(dir, ['queue', 'list', '--config', join(dir, 'config.json')]).stdout, '0 messages in the queue\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('both worker processes serve sessions: portcullis conn names each session\'s worker, status lists both, reload reaches both, SIGTERM stops all with exit 0', async () => {
    const c = await startCluster({ rules: { builtin: false } });
    const sessions: RawSmtp[] = [];
    try {
      assert.equal(c.pids.length, 2);
      for (let i = 0; i < 4; i++) {
        const { c: s, greeting } = await RawSmtp.open(c.port);
        assert.match(greeting, /^220 /);
        assert.match(await s.cmd('EHLO client.example'), /^250-/);
        sessions.push(s);
      }
      const conn = cli(c.dir, ['conn', '--config', c.cfg]);
      assert.equal(conn.status, 0, conn.stderr);
      const workers = conn.stdout.trim().split('\n').map((l) => /worker=(\d) pid=(\d+)$/.exec(l)?.slice(1).join(' '));
      assert.deepEqual([...new Set(workers)].sort(), [`1 ${c.pids[0]}`, `2 ${c.pids[1]}`]);
      const status = cli(c.dir, ['status', '--config', c.cfg]);
      assert.equal(status.status, 0, status.stderr);
      assert.match(status.stdout, new RegExp(`^pid ${c.child.pid}, started `, 'm'));
      assert.match(status.stdout, new RegExp(`^worker 1: pid ${c.pids[0]}, started .*, rule set version 1, reloads 0 ok, 0 failed$`, 'm'));
      assert.match(status.stdout, new RegExp(`^worker 2: pid ${c.pids[1]}, started .*, rule set version 1, reloads 0 ok, 0 failed$`, 'm'));
      // portcullis reload reaches every worker, and returns once all have reloaded.
      const reload = cli(c.dir, ['reload', '--config', c.cfg]);
      assert.equal(reload.status, 0, reload.stderr);
      const after = cli(c.dir, ['status', '--config', c.cfg]).stdout;
      for (const [i, pid] of c.pids.entries()) assert.match(after, new RegExp(`^worker ${i + 1}: pid ${pid}, started .*, rule set version 2, reloads 1 ok, 0 failed$`, 'm'));
    } finally {
      for (const s of sessions) s.end();
      assert.equal(await c.stop(), 0);
      rmSync(c.dir, { recursive: true, force: true });
    }
    for (const pid of c.pids) assert.throws(() => process.kill(pid, 0), /ESRCH/, `worker ${pid} has exited`);
  });

  it('portcullis blacklist add refuses the client on both workers at once: 554 5.7.1 before the greeting, logged by each worker naming the rule', async () => {
    const c = await startCluster({});
    try {
      const add = cli(c.dir, ['blacklist', 'add', '127.0.0.2', '--reason', 'by hand', '--config', c.cfg]);
      assert.equal(add.status, 0, add.stderr);
      assert.equal(add.stdout, 'blacklisted 127.0.0.2 (the running host applied it)\n');
      for (let i = 0; i < 4; i++) {
        const { c: s, greeting } = await RawSmtp.open(c.port, '127.0.0.2');
        assert.match(greeting, /^554 5\.7\.1 Access denied: by hand/);
        s.end();
      }
      // Another client is served as before.
      const { c: s, greeting } = await RawSmtp.open(c.port, '127.0.0.3');
      assert.match(greeting, /^220 /);
      s.end();
      await eventually('both workers logged a refusal by the blacklist rule', () => {
        const by = new Set(logLines(c).filter((l) => l.rule === 'blacklist' && l.msg.includes('127.0.0.2')).map((l) => l.pid));
        return c.pids.every((p) => by.has(p));
      });
    } finally {
      assert.equal(await c.stop(), 0);
      rmSync(c.dir, { recursive: true, force: true });
    }
  });

  it('with no admin listener, portcullis blacklist add reaches both workers through the database and SIGHUP to the primary', async () => {
    const c = await startCluster({ admin: { listen: null } });
    try {
      const add = cli(c.dir, ['blacklist', 'add', '127.0.0.2', '--reason', 'by file', '--config', c.cfg]);
      assert.equal(add.status, 0, add.stderr);
      assert.equal(add.stdout, `blacklisted 127.0.0.2\ntold the running host (pid ${c.child.pid}) to re-read it\n`);
      // A worker re-reads the store before its config and rules, then logs the reload.
      await eventually('both workers reloaded', () => c.pids.every((p) => logLines(c).some((l) => l.pid === p && l.msg.startsWith('reloaded: version 2'))), 30_000);
      for (let i = 0; i < 4; i++) {
        const { c: s, greeting } = await RawSmtp.open(c.port, '127.0.0.2');
        assert.match(greeting, /^554 5\.7\.1 Access denied: by file/);
        s.end();
      }
    } finally {
      assert.equal(await c.stop(), 0);
      rmSync(c.dir, { recursive: true, force: true });
    }
  });

  it('with no next hop, every worker delivers local mail into the data dir\'s one mailbox folder', async () => {
    const c = await startCluster({ rules: { builtin: false } });
    try {
      for (let n = 0; n < 4; n++) {
        const transport = mailer(c.port);
        const info = await transport.sendMail({ envelope: { from: 'a@example.org', to: ['u@localhost'] }, raw: `Subject: local-${n}\r\n\r\nmessage ${n}\r\n` });
        transport.close();
        assert.match(info.response, /^250 /);
      }
      await eventually('all 4 are in data/mailbox/new', () => readdirSync(join(c.dir, 'data', 'mailbox', 'new')).length === 4, 15_000);
      const by = new Set(logLines(c).filter((l) => /^delivered \w+ to <u@localhost> via the mailbox folder/.test(l.msg)).map((l) => l.pid));
      assert.deepEqual([...by].sort(), [...c.pids].sort(), 'both workers delivered some');
      assert.deepEqual(readdirSync(join(c.dir, 'data', 'slots', '2')).filter((f) => f === 'mailbox'), [], 'no mailbox folder of its own');
    } finally {
      assert.equal(await c.stop(), 0);
      rmSync(c.dir, { recursive: true, force: true });
    }
  });

  it('SIGKILL of one worker under load: every message answered 250 reaches the next hop, and the worker is replaced in its slot', async () => {
    const next = await startNextHop();
    const c = await startCluster({
      rules: { builtin: false },
      delivery: { mode: 'spool', nextHop: { host: '127.0.0.1', port: next.port, starttls: 'off' }, queue: { retryBaseMs: 20, retryMaxMs: 200 } },
    });
    const acked = new Set<number>();
    let seq = 0;
    let stop = false;
    try {
      const clients = Array.from({ length: 6 }, async () => {
        while (!stop) {
          const n = seq++;
          const transport = mailer(c.port);
          try {
            const info = await transport.sendMail({ envelope: { from: 'a@example.org', to: ['u@localhost'] }, raw: `Subject: cluster-${n}\r\n\r\nmessage ${n}\r\n` });
            if (/^250 /.test(info.response)) acked.add(n);
          } catch {
            // its worker was killed mid-session: no 250, no promise made
          } finally {
            transport.close();
          }
        }
      });
      await eventually('load is flowing', () => acked.size >= 30, 30_000);
      const victim = c.pids[1]!;
      process.kill(victim, 'SIGKILL');
      await eventually('the primary replaced worker 2', () => logLines(c).some((l) => /^worker 2 \(pid \d+\) serves again/.test(l.msg)), 30_000);
      const before = acked.size;
      await eventually('the replaced cluster acknowledges more mail', () => acked.size >= before + 30, 30_000);
      stop = true;
      await Promise.all(clients);
      const died = logLines(c).find((l) => l.msg.startsWith(`worker 2 (pid ${victim}) killed by SIGKILL`));
      assert.ok(died, 'the primary logged the death');
      const received = () => new Set(next.received.map((m) => Number(/^Subject: cluster-(\d+)\r$/m.exec(m.raw.toString())?.[1])));
      await eventually('every acknowledged message reached the next hop', () => [...acked].every((n) => received().has(n)), 30_000);
      const status = cli(c.dir, ['status', '--config', c.cfg]);
      const w2 = /^worker 2: pid (\d+)/m.exec(status.stdout)?.[1];
      assert.ok(w2 && Number(w2) !== victim, `worker 2 has a new pid (${w2})`);
    } finally {
      stop = true;
      assert.equal(await c.stop(), 0);
      await next.close();
      rmSync(c.dir, { recursive: true, force: true });
    }
  });

  it('portcullis queue list shows every slot\'s spool, and a start with fewer processes delivers what the slots beyond them held', async () => {
    const dir = tempDir();
    const down = await deadPort();
    const first = await startCluster({ rules: { builtin: false }, delivery: { mode: 'spool', nextHop: { host: '127.0.0.1', port: down, starttls: 'off' }, queue: { retryBaseMs: 100, retryMaxMs: 300 } } }, 2, dir);
    const sent: number[] = [];
    try {
      for (let n = 0; n < 8; n++) {
        const transport = mailer(first.port);
        const info = await transport.sendMail({ envelope: { from: 'a@example.org', to: ['u@localhost'] }, raw: `Subject: slot-${n}\r\n\r\nmessage ${n}\r\n` });
        transport.close();
        assert.match(info.response, /^250 /);
        sent.push(n);
      }
    } finally {
      assert.equal(await first.stop(), 0);
    }
    assert.ok(readdirSync(join(dir, 'data', 'slots', '2', 'spool', 'new')).length > 0, 'slot 2 holds some of them');
    const listed = cli(dir, ['queue', 'list', '--config', first.cfg]);
    assert.equal(listed.status, 0, listed.stderr);
    assert.match(listed.stdout, /^8 messages in the queue$/m, 'queue list reads every slot\'s spool');
    const next = await startNextHop();
    const again = await startCluster({ rules: { builtin: false }, delivery: { mode: 'spool', nextHop: { host: '127.0.0.1', port: next.port, starttls: 'off' } } }, 1, dir);
    try {
      await eventually('all 8 arrive', () => next.received.length === 8, 15_000);
      const got = next.received.map((m) => Number(/^Subject: slot-(\d+)\r$/m.exec(m.raw.toString())?.[1])).sort((a, b) => a - b);
      assert.deepEqual(got, sent);
      assert.deepEqual(readdirSync(join(dir, 'data', 'slots')), ['1'], 'slot 2 is gone');
    } finally {
      assert.equal(await again.stop(), 0);
      await next.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
