/**
 * Prometheus metrics on the admin listener, as a user sees them: mail over real SMTP,
 * then GET /metrics over real HTTP, asserting the exact sample lines a scrape returns.
 * Who may read them (the token, loopback), and the config errors that keep the admin
 * listener off an SMTP address and off the network without a token.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { AdminServer, type Routes } from '../host/admin/server.js';
import { cli, eventually, RawSmtp, rule, scratchDirs, withHost, rcptReply, type TestHost } from './helpers.js';

const NO_X = rule('no-x', `{ rcpt: (ev) => ev.rcpt.address.startsWith('x@') ? reject(550, 'No x here') : next() }`);
const MESSAGE = 'Subject: hi\r\n\r\nhello\r\n';
const TOKEN = 'test-token-0123456789abcdef';
const scratch = scratchDirs();

interface Scrape {
  status: number;
  type: string | null;
  body: string;
}

/** GET `path` from the host's admin listener over real HTTP. */
async function get(h: TestHost, path = '/metrics', headers: Record<string, string> = {}): Promise<Scrape> {
  const a = h.host.adminAddress!;
  const res = await fetch(`http://127.0.0.1:${a.port}${path}`, { headers });
  return { status: res.status, type: res.headers.get('content-type'), body: await res.text() };
}

/** The sample lines of one metric family (`name`, `name{…}`, and a histogram's `name_count`…), in the order served. */
function samples(body: string, name: string): string[] {
  return body.split('\n').filter((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
}

/** One session: a recipient the rule refuses, one it accepts, a message, QUIT. */
async function refusedThenAccepted(port: number): Promise<string[]> {
  const { c, greeting } = await RawSmtp.open(port);
  const replies = [greeting, await c.cmd('EHLO client.example.org'), await c.cmd('MAIL FROM:<a@example.org>'), await c.cmd('RCPT TO:<x@localhost>'), await c.cmd('RCPT TO:<y@localhost>'), await c.cmd('DATA')];
  replies.push(await c.cmd(`${MESSAGE}.`), await c.cmd('QUIT'));
  c.end();
  return replies.map((r) => r.split('\n').at(-1)!.slice(0, 3));
}

describe('GET /metrics', () => {
  it('shows a refusal under the rule that made it, with the session, message and replies around it', async () => {
    await withHost({ rules: { 'no-x.ts': NO_X } }, async (h) => {
      assert.deepEqual(await refusedThenAccepted(h.port), ['220', '250', '250', '550', '250', '354', '250', '221']);
      await eventually('the session closed', async () => samples((await get(h)).body, 'portcullis_sessions_open')[0] === 'portcullis_sessions_open 0');
      const r = await get(h);
      assert.equal(r.status, 200);
      assert.equal(r.type, 'text/plain; version=0.0.4; charset=utf-8');
      assert.ok(r.body.includes('# HELP portcullis_rule_verdicts_total Verdicts other than next'), r.body);
      assert.ok(r.body.includes('# TYPE portcullis_rule_verdicts_total counter\n'), r.body);
      assert.deepEqual(samples(r.body, 'portcullis_rule_verdicts_total'), ['portcullis_rule_verdicts_total{rule="no-x",phase="rcpt",action="reject",mode="enforce"} 1']);
      assert.deepEqual(samples(r.body, 'portcullis_replies_refused_total'), ['portcullis_replies_refused_total{phase="rcpt",rule="no-x"} 1']);
      // Both recipients were put to the rule: the histogram's count is the calls.
      assert.deepEqual(samples(r.body, 'portcullis_rule_call_duration_seconds_count'), ['portcullis_rule_call_duration_seconds_count{rule="no-x",phase="rcpt"} 2']);
      assert.deepEqual(samples(r.body, 'portcullis_rule_failures_total'), []);
      assert.deepEqual(samples(r.body, 'portcullis_sessions_total'), ['portcullis_sessions_total 1']);
      assert.deepEqual(samples(r.body, 'portcullis_replies_total'), ['portcullis_replies_total{class="2xx"} 6', 'portcullis_replies_total{class="3xx"} 1', 'portcullis_replies_total{class="4xx"} 0', 'portcullis_replies_total{class="5xx"} 1']);
      assert.deepEqual(samples(r.body, 'portcullis_messages_total'), ['portcullis_messages_total{disposition="deliver"} 1', 'portcullis_messages_total{disposition="redirect"} 0', 'portcullis_messages_total{disposition="discard"} 0', 'portcullis_messages_total{disposition="quarantine"} 0']);
      assert.deepEqual(samples(r.body, 'portcullis_received_bytes_total'), [`portcullis_received_bytes_total ${Buffer.byteLength(MESSAGE)}`]);
      // The test host holds its queue: the message waits in the spool.
      assert.deepEqual(samples(r.body, 'portcullis_delivery_queue_messages'), ['portcullis_delivery_queue_messages 1']);
      assert.deepEqual(samples(r.body, 'portcullis_ruleset_version'), ['portcullis_ruleset_version 1']);
      assert.deepEqual(samples(r.body, 'portcullis_reloads_total'), ['portcullis_reloads_total{result="ok"} 0', 'portcullis_reloads_total{result="failed"} 0']);
    });
  });

  it('keeps counting across reloads; the version gauge follows good reloads, a broken one is counted as failed', async () => {
    await withHost({ rules: { 'no-x.ts': NO_X } }, async (h) => {
      assert.equal(await rcptReply(h.port, 'x@localhost'), '550 5.7.1 No x here');
      writeFileSync(join(h.rulesDir, 'no-x.ts'), NO_X.replace('No x here', 'Still no x'));
      await h.host.reload('test');
      assert.equal(await rcptReply(h.port, 'x@localhost'), '550 5.7.1 Still no x');
      writeFileSync(join(h.rulesDir, 'no-x.ts'), 'export default 42;\n');
      await h.host.reload('test');
      const r = await get(h);
      assert.deepEqual(samples(r.body, 'portcullis_rule_verdicts_total'), ['portcullis_rule_verdicts_total{rule="no-x",phase="rcpt",action="reject",mode="enforce"} 2']);
      assert.deepEqual(samples(r.body, 'portcullis_ruleset_version'), ['portcullis_ruleset_version 2']);
      assert.deepEqual(samples(r.body, 'portcullis_reloads_total'), ['portcullis_reloads_total{result="ok"} 1', 'portcullis_reloads_total{result="failed"} 1']);
    });
  });

  it('counts a rule failure under its rule, phase and outcome', async () => {
    const spin = rule('spin', `{ mail: () => { for (;;) {} } }`);
    await withHost({ rules: { 'spin.ts': spin }, config: { rules: { defaults: { timeoutMs: 20 } } } }, async (h) => {
      const { c } = await RawSmtp.open(h.port);
      await c.cmd('EHLO client.example.org');
      assert.match(await c.cmd('MAIL FROM:<a@example.org>'), /^451 4\.3\.0 Temporary local problem/);
      c.end();
      assert.deepEqual(samples((await get(h)).body, 'portcullis_rule_failures_total'), ['portcullis_rule_failures_total{rule="spin",phase="mail",outcome="timeout"} 1']);
    });
  });
});

describe('who may read /metrics', () => {
  it('with a token, a loopback listener still lets a scraper on this machine in without it', async () => {
    await withHost({ config: { admin: { listen: '127.0.0.1:0', token: TOKEN } } }, async (h) => {
      assert.equal((await get(h)).status, 200);
      assert.equal((await get(h, '/metrics', { authorization: `Bearer ${TOKEN}` })).status, 200);
    });
  });

  it('beyond loopback, a request without the token gets 401 and one with it the metrics', async () => {
    await withHost({ config: { admin: { listen: '0.0.0.0:0', token: TOKEN } } }, async (h) => {
      const none = await get(h);
      assert.deepEqual([none.status, none.body], [401, 'Unauthorized: send Authorization: Bearer <admin.token>\n']);
      assert.equal((await get(h, '/metrics', { authorization: 'Bearer wrong-token-0123456789' })).status, 401);
      assert.equal((await get(h, '/metrics', { authorization: TOKEN })).status, 401); // the scheme is part of it
      const ok = await get(h, '/metrics', { authorization: `Bearer ${TOKEN}` });
      assert.equal(ok.status, 200);
      assert.deepEqual(samples(ok.body, 'portcullis_ruleset_version'), ['portcullis_ruleset_version 1']);
    });
  });

  it('a route that is not for scrapers needs the token on loopback too; unknown paths get 404, wrong methods 405', async () => {
    const routes: Routes = {
      'GET /metrics': { access: 'scrape', handle: async () => ({ status: 200, contentType: 'text/plain', body: 'm\n' }) },
      'POST /sessions/kill': { access: 'token', handle: async () => ({ status: 200, contentType: 'text/plain', body: 'killed\n' }) },
    };
    const admin = await AdminServer.start({ listen: '127.0.0.1:0', token: TOKEN, routes, log: pino({ level: 'silent' }) });
    const url = (path: string) => `http://127.0.0.1:${admin.address.port}${path}`;
    const auth = { authorization: `Bearer ${TOKEN}` };
    try {
      assert.equal((await fetch(url('/sessions/kill'), { method: 'POST' })).status, 401);
      assert.equal(await (await fetch(url('/sessions/kill'), { method: 'POST', headers: auth })).text(), 'killed\n');
      assert.equal((await fetch(url('/nothing'))).status, 401); // nothing is told without the token
      assert.equal((await fetch(url('/nothing'), { headers: auth })).status, 404);
      const wrong = await fetch(url('/metrics'), { method: 'DELETE', headers: auth });
      assert.deepEqual([wrong.status, wrong.headers.get('allow')], [405, 'GET, HEAD']);
    } finally {
      await admin.close();
    }
  });
});

describe('admin listener config', () => {
  it('portcullis start refuses an admin address SMTP listens on, and one beyond loopback without a token', () => {
    const dir = scratch();
    const start = (config: object) => {
      writeFileSync(join(dir, 'config.json'), JSON.stringify({ dataDir: join(dir, 'data'), ...config }));
      return cli(dir, ['start', '--config', 'config.json']);
    };
    const same = start({ listen: ['0.0.0.0:2525'], admin: { listen: '127.0.0.1:2525' } });
    assert.deepEqual([same.status, same.stderr], [78, 'portcullis: invalid config config.json:\n  /admin/listen: 127.0.0.1:2525 is where SMTP listens too (/listen/0: 0.0.0.0:2525): the admin listener needs an address of its own\n']);
    const open = start({ admin: { listen: '0.0.0.0:8025' } });
    assert.deepEqual([open.status, open.stderr], [78, 'portcullis: invalid config config.json:\n  /admin/token: required when admin.listen (0.0.0.0:8025) is not a loopback address: set a long random one (openssl rand -hex 32), or listen on 127.0.0.1\n']);
  });
});
