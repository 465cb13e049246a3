/**
 * Recording real sessions and replaying them (issue 18): a host with recording on takes
 * mail over real SMTP (nodemailer and raw sockets, from several 127.0.0.x clients) while
 * real DNS servers answer its DNS rule; several rules decide. Then a rule is edited, the
 * DNS servers are stopped, and `portcullis replay` must report exactly the sessions whose
 * outcome changes, and no others, with no DNS at all (the facts come from the record).
 * Saved fixtures pass in the harness; a truncated record file is skipped with a warning.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import nodemailer from 'nodemailer';
import type { RecordedSession } from '../sdk/index.js';
import { loadRecordedSession, loadRuleSet } from '../host/testing/harness.js';
import { dnsServersFor, dnsServersMissing } from './dns-servers.js';
import { cli, RawSmtp, startTestHost, type TestHost } from './helpers.js';

const skip = dnsServersMissing();
if (skip) console.log(`# skipping the recording tests: ${skip}`);

const RULES: Record<string, string> = {
  'listed-client.ts': `import { defineRule, reject } from 'portcullis/sdk';
export default defineRule({ name: 'listed-client', needs: ['dnsbl:bl.test'], phases: {
  rcpt: (e) => (e.dns.dnsbl['bl.test']?.status === 'listed' ? reject(550, 'Client listed in bl.test') : undefined),
} });
`,
  'no-blockme.ts': `import { defineRule, reject } from 'portcullis/sdk';
export default defineRule({ name: 'no-blockme', phases: { rcpt: (e) => (e.rcpt.address.startsWith('blockme@') ? reject(550, 'Blocked') : undefined) } });
`,
  'subject.ts': `import { defineRule, reject } from 'portcullis/sdk';
export default defineRule({ name: 'subject', phases: {
  message: (e, ctx) => {
    const subject = e.message.headers.find(([n]) => n.toLowerCase() === 'subject')?.[1] ?? '';
    if (/viagra/i.test(subject)) return reject(550, 'Spam subject');
    if (/newsletter/i.test(subject)) ctx.addHeader('X-Newsletter', 'yes');
  },
} });
`,
};

async function send(port: number, from: string, to: string, subject: string): Promise<string> {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port, localAddress: from, name: 'mx.example.org', secure: false, ignoreTLS: true, connectionTimeout: 5000, greetingTimeout: 5000, socketTimeout: 10000 });
  try {
    return (await t.sendMail({ from: 'sender@example.org', to, subject, text: 'hello\n' })).response;
  } catch (e) {
    return (e as { response?: string }).response ?? String(e);
  } finally {
    t.close();
  }
}

/** One raw session: every reply, in order. */
async function raw(port: number, from: string, rcpt: string, subject: string): Promise<string[]> {
  const { c, greeting } = await RawSmtp.open(port, from);
  const replies = [greeting.slice(0, 3), await c.cmd('EHLO raw.example.net'), await c.cmd('MAIL FROM:<raw@example.net>'), await c.cmd(`RCPT TO:<${rcpt}>`)].map((r) => r.split('\n').pop()!);
  if (replies[3]!.startsWith('250')) {
    replies.push(await c.cmd('DATA'));
    replies.push(await c.cmd(`Subject: ${subject}\r\nFrom: raw@example.net\r\n\r\nhello\r\n.`));
  }
  replies.push(await c.cmd('QUIT'));
  c.end();
  return replies;
}

describe('portcullis replay of recorded sessions', { skip: skip ?? false }, () => {
  const dns = dnsServersFor({ ipZones: { 'bl.test': ['127.0.0.66 :127.0.0.2:listed'] }, domainZones: {}, localDomain: 'mail.test', mx: [], hosts: [] }, 'portcullis-record-dns-');
  let h: TestHost;
  const replies: Record<string, string | string[]> = {};
  /** Recorded sessions by what they were: a, blockme, listed, viagra, raw, newsletter. */
  const ids: Record<string, string> = {};
  let records: RecordedSession[] = [];

  before(async () => {
    h = await startTestHost({ rules: RULES, config: { dns: { servers: [dns.server] }, record: { enabled: true, bodies: 'capped' } } });
    replies.a = await send(h.port, '127.0.0.61', 'a@localhost', 'hello');
    replies.blockme = await send(h.port, '127.0.0.62', 'blockme@localhost', 'hello');
    replies.listed = await raw(h.port, '127.0.0.66', 'b@localhost', 'hello');
    replies.viagra = await send(h.port, '127.0.0.63', 'c@localhost', 'cheap viagra');
    replies.raw = await raw(h.port, '127.0.0.64', 'carol@localhost', 'hello');
    replies.newsletter = await send(h.port, '127.0.0.65', 'd@localhost', 'our newsletter');
    await h.host.close(); // writes what is queued
    const dir = join(h.dataDir, 'record');
    records = readdirSync(dir).flatMap((f) => readFileSync(join(dir, f), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as RecordedSession));
    const byClient: Record<string, string> = { '127.0.0.61': 'a', '127.0.0.62': 'blockme', '127.0.0.66': 'listed', '127.0.0.63': 'viagra', '127.0.0.64': 'raw', '127.0.0.65': 'newsletter' };
    for (const r of records) ids[byClient[r.client.ip]!] = r.id;
    // The edit: no-blockme now refuses carol@ too (and no longer blockme@).
    writeFileSync(join(h.rulesDir, 'no-blockme.ts'), RULES['no-blockme.ts']!.replace("startsWith('blockme@')", "startsWith('carol@')"));
    await dns.close(); // a replay needs no DNS server
  });
  after(async () => {
    const { rmSync } = await import('node:fs');
    rmSync(h.dir, { recursive: true, force: true });
  });

  it('records every session with its replies, deciding rules and DNS facts', () => {
    assert.match(String(replies.a), /^250 /);
    assert.equal(replies.blockme, '550 5.7.1 Blocked');
    assert.deepEqual(replies.listed, ['220', '250 SIZE 26214400', '250 2.1.0 Accepted', '550 5.7.1 Client listed in bl.test', '221 2.0.0 Bye']);
    assert.equal(replies.viagra, '550 5.7.1 Spam subject');
    assert.equal(records.length, 6);
    const listed = records.find((r) => r.id === ids.listed)!;
    assert.deepEqual(listed.steps.find((s) => s.cmd === 'rcpt'), { cmd: 'rcpt', t: listed.steps[3]!.t, address: 'b@localhost', args: {}, reply: '550 5.7.1 Client listed in bl.test', rule: 'listed-client' });
    assert.deepEqual(listed.facts['dnsbl:bl.test:127.0.0.66'], { status: 'listed', codes: ['127.0.0.2'], text: 'listed' });
    const news = records.find((r) => r.id === ids.newsletter)!.steps.find((s) => s.cmd === 'message');
    assert.ok(news?.cmd === 'message' && news.accepted?.headers.some(([n, v]) => n === 'X-Newsletter' && v === 'yes'));
    assert.equal(news.body, 'hello\r\n'); // bodies: capped
  });

  it('reports exactly the sessions an edited rule changes, with the DNS servers down', () => {
    const r = cli(h.dir, ['replay', '--config', h.configFile, '--store', 'empty', '--json', '--only-changed']);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { sessions: number; changed: number; changes: unknown[]; missing: Record<string, number>; diffs: { id: string; changes: { command: string; recorded: { reply: string | null }; replayed: { reply: string | null; rule: string | null } }[] }[] };
    assert.equal(out.sessions, 6);
    assert.equal(out.changed, 2);
    assert.deepEqual(out.missing, {});
    assert.deepEqual(out.changes, [
      { rule: 'no-blockme', change: 'refused', sessions: 1, recipients: 1, messages: 0, samples: [ids.raw] },
      { rule: 'no-blockme', change: 'accepted', sessions: 1, recipients: 1, messages: 0, samples: [ids.blockme] },
    ]);
    const diffs = Object.fromEntries(out.diffs.map((d) => [d.id, d.changes.map((c) => `${c.command}: ${c.recorded.reply ?? 'ok'} -> ${c.replayed.reply ?? 'ok'}`)]));
    assert.deepEqual(diffs, {
      [ids.blockme!]: ['RCPT TO:<blockme@localhost>: 550 5.7.1 Blocked -> ok'],
      [ids.raw!]: ['RCPT TO:<carol@localhost>: ok -> 550 5.7.1 Blocked'],
    });
  });

  it('prints one session side by side with --show', () => {
    const r = cli(h.dir, ['replay', '--config', h.configFile, '--show', ids.raw!]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /\nRCPT TO:<carol@localhost> +ok +550 5\.7\.1 Blocked \(rule no-blockme\) +<- changed\n/);
    assert.match(r.stdout, /\nDATA +ok +\(not reached\)\n/);
  });

  it('saves fixtures that the harness replays with loadRecordedSession', async () => {
    const fixtures = join(h.dir, 'fixtures');
    const r = cli(h.dir, ['replay', '--config', h.configFile, '--save-fixtures', fixtures, '--sessions', ids.listed!, ids.newsletter!]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `saved ${join(fixtures, `${ids.listed}.json`)}\nsaved ${join(fixtures, `${ids.newsletter}.json`)}\n`);
    const harness = await loadRuleSet({ config: { rules: { builtin: false } }, rulesDirs: [h.rulesDir] });
    try {
      for (const id of [ids.listed!, ids.newsletter!]) {
        const replayed = await harness.replay(loadRecordedSession(join(fixtures, `${id}.json`)));
        assert.deepEqual(replayed.changes, [], id);
        assert.deepEqual(replayed.missing, []);
      }
      const listed = await harness.replay(loadRecordedSession(join(fixtures, `${ids.listed}.json`)));
      assert.ok(listed.replies.includes('550 5.7.1 Client listed in bl.test'));
    } finally {
      await harness.close();
    }
  });

  it('replays only the sessions that started between --from and --to', () => {
    const byStart = [...records].sort((a, b) => a.steps[0]!.t - b.steps[0]!.t);
    const from = new Date(byStart[2]!.steps[0]!.t).toISOString();
    const to = new Date(byStart[4]!.steps[0]!.t).toISOString(); // exclusive
    const r = cli(h.dir, ['replay', '--config', h.configFile, '--store', 'empty', '--json', '--from', from, '--to', to]);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { sessions: number; diffs: { id: string }[] };
    assert.deepEqual(out.diffs.map((d) => d.id), [byStart[2]!.id, byStart[3]!.id]);
  });

  it('says which facts a new rule needs that the record lacks, and replays on', () => {
    const extra = mkdtempSync(join(h.dir, 'extra-'));
    writeFileSync(join(extra, 'other-list.ts'), `import { defineRule, reject } from 'portcullis/sdk';
export default defineRule({ name: 'other-list', needs: ['dnsbl:other.test'], phases: { mail: (e) => (e.dns.dnsbl['other.test']?.status === 'listed' ? reject(550, 'Listed') : undefined) } });
`);
    const r = cli(h.dir, ['replay', '--config', h.configFile, '--store', 'empty', '--rules', extra]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^replayed 6 sessions /);
    assert.match(r.stdout, /\nthe record lacks dnsbl:other\.test for 6 sessions: answered as a failed lookup/);
  });

  it('skips a truncated record line with a warning and replays the rest', () => {
    const dir = join(h.dataDir, 'record');
    const name = readdirSync(dir)[0]!;
    const copy = mkdtempSync(join(h.dir, 'record-'));
    const file = join(copy, name);
    const lines = readFileSync(join(dir, name), 'utf8');
    writeFileSync(file, lines + lines.split('\n')[0]!.slice(0, 120)); // a write cut short by a crash
    const r = cli(h.dir, ['replay', '--config', h.configFile, '--store', 'empty', '--records', copy]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, `warning: ${file}:7: not a whole JSON line (the file was cut short?): skipped\n`);
    assert.match(r.stdout, /^replayed 6 sessions /);
    assert.match(r.stdout, /\n2 sessions would change:\n {2}rule no-blockme now refuses: 1 session, 1 recipient \(e\.g\. \w+\)\n {2}rule no-blockme now lets through: 1 session, 1 recipient/);
  });
});
