/**
 * Hot reload: edits act without a restart and without a dropped session; broken edits
 * never act; sessions finish on the version they started with; old sandboxes are freed.
 */
import assert from 'node:assert/strict';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { eventually, mailer, RawSmtp, rule, withHost, rcptReply } from './helpers.js';

const variant = (text: string) => rule('edit', `{ rcpt: (ev) => ev.rcpt.address.startsWith('x@') ? reject(550, '${text}') : next() }`);
const BROKEN = "import { defineRule } from 'portcullis/sdk';\nexport default defineRule({ name: 'edit', phases: { rcpt: () => { return ) } } });\n";

describe('hot reload of rules', () => {
  it('50 saves under load, valid and broken in turn: no failed session, valid edits act, broken ones never do', async () => {
    await withHost({ rules: { 'edit.ts': variant('v-start') }, watch: true }, async (h) => {
      const file = join(h.rulesDir, 'edit.ts');
      let stop = false;
      let sent = 0;
      const failures: string[] = [];
      // Three clients send mail in a loop, each message on a new connection.
      const load = Array.from({ length: 3 }, async () => {
        const t = mailer(h.port);
        while (!stop) {
          try {
            await t.sendMail({ envelope: { from: 'load@example.org', to: ['ok@localhost'] }, raw: 'Subject: load\r\n\r\nx\r\n' });
            sent++;
          } catch (e) {
            failures.push(String((e as Error).message));
          }
        }
      });
      let good = 'v-start';
      for (let k = 0; k < 50; k++) {
        const failedBefore = h.host.status().reloads.failed;
        const src = k % 2 === 0 ? variant((good = `v${k}`)) : BROKEN;
        if (k % 4 === 0) {
          // The way many editors save: write a temporary file, rename it over the original.
          writeFileSync(`${file}.swp`, src);
          renameSync(`${file}.swp`, file);
        } else writeFileSync(file, src);
        if (k % 2 === 0) await eventually(`save ${k} acts`, async () => (await rcptReply(h.port, 'x@localhost')) === `550 5.7.1 ${good}`);
        else {
          await eventually(`broken save ${k} is reported`, () => h.host.status().reloads.failed > failedBefore);
          assert.equal(await rcptReply(h.port, 'x@localhost'), `550 5.7.1 ${good}`);
        }
      }
      stop = true;
      await Promise.all(load);
      assert.deepEqual(failures, []);
      assert.ok(sent > 0);
      const st = h.host.status();
      assert.match(st.lastError?.problems[0] ?? '', /edit\.ts:2:74: Unexpected "\)"/);
      assert.ok(h.logs.some((l) => String(l.msg).startsWith('reload failed, version')));
    });
  });

  it('a session started before a reload finishes with the old rule; new sessions get the new one', async () => {
    await withHost({ rules: { 'edit.ts': variant('old') }, watch: true }, async (h) => {
      const { c } = await RawSmtp.open(h.port);
      await c.cmd('EHLO early.example');
      await c.cmd('MAIL FROM:<a@example.org>');
      const v = h.host.status().version;
      writeFileSync(join(h.rulesDir, 'edit.ts'), variant('new'));
      await eventually('reloaded', () => h.host.status().version > v);
      assert.equal(await rcptReply(h.port, 'x@localhost'), '550 5.7.1 new');
      assert.equal(await c.cmd('RCPT TO:<x@localhost>'), '550 5.7.1 old');
      c.end();
      // Once the old session is gone, its version's sandboxes are released.
      await eventually('old version released', async () => (await h.host.sandbox.stats()).workers.every((w) => w.versions.length === 1));
    });
  });

  it('adding, renaming and deleting rule files adds, keeps and removes rules', async () => {
    await withHost({ rules: { 'edit.ts': variant('one') }, watch: true }, async (h) => {
      writeFileSync(join(h.rulesDir, 'second.ts'), rule('second', `{ rcpt: (ev) => ev.rcpt.address.startsWith('y@') ? reject(550, 'second') : next() }`));
      await eventually('added', () => h.host.status().rules.includes('second'));
      assert.equal(await rcptReply(h.port, 'y@localhost'), '550 5.7.1 second');
      renameSync(join(h.rulesDir, 'second.ts'), join(h.rulesDir, 'renamed.ts'));
      await eventually('renamed', () => h.host.current().rules.some((r) => r.name === 'second' && r.file.endsWith('renamed.ts')));
      rmSync(join(h.rulesDir, 'renamed.ts'));
      await eventually('removed', () => !h.host.status().rules.includes('second'));
      assert.equal(await rcptReply(h.port, 'y@localhost'), '250 2.1.5 Accepted');
    });
  });

  it('500 reloads leave one version\'s sandboxes alive', async (t) => {
    await withHost({ rules: { 'edit.ts': variant('same') } }, async (h) => {
      const rss0 = process.memoryUsage().rss;
      for (let i = 0; i < 500; i++) await h.host.reload('test');
      const stats = await h.host.sandbox.stats();
      assert.equal(h.host.status().version, 501);
      assert.deepEqual(stats.workers.map((w) => [w.modules, w.versions]), [[1, [501]], [1, [501]]]);
      assert.deepEqual([...h.host.pins()], []);
      t.diagnostic(`test process RSS ${Math.round(rss0 / 1048576)} MB before, ${Math.round(process.memoryUsage().rss / 1048576)} MB after 500 reloads (workers share it)`);
      assert.equal(await rcptReply(h.port, 'x@localhost'), '550 5.7.1 same');
    });
  });
});

describe('hot reload of the config', () => {
  it('a live change acts, an invalid config is refused and the old one keeps working, a listen change needs a restart', async () => {
    await withHost({ config: { relayNetworks: [] }, watch: true }, async (h) => {
      const base = JSON.parse((await import('node:fs')).readFileSync(h.configFile, 'utf8')) as Record<string, unknown>;
      assert.equal(await rcptReply(h.port, 'x@example.com'), '554 5.7.1 Relaying denied');
      writeFileSync(h.configFile, JSON.stringify({ ...base, localDomains: ['localhost', 'example.com'] }));
      await eventually('local domain added', async () => (await rcptReply(h.port, 'x@example.com')) === '250 2.1.5 Accepted');
      writeFileSync(h.configFile, JSON.stringify({ ...base, localDomains: ['localhost', 'example.com'], limits: { maxClients: 0 } }));
      await eventually('invalid config reported', () => h.host.status().reloads.failed === 1);
      assert.deepEqual(h.host.status().lastError?.problems, [`config ${h.configFile}: /limits/maxClients: must be >= 1`]);
      assert.equal(await rcptReply(h.port, 'x@example.com'), '250 2.1.5 Accepted');
      writeFileSync(h.configFile, JSON.stringify({ ...base, localDomains: ['localhost', 'example.com'], listen: ['127.0.0.1:1'] }));
      await eventually('restart-only change reported', () => h.host.status().restartNeeded.includes('listen'));
      assert.equal(await rcptReply(h.port, 'x@example.com'), '250 2.1.5 Accepted');
      assert.ok(h.logs.some((l) => String(l.msg) === "config listen changed: that takes a restart; the running values stay"));
    });
  });

  it('a delivery change is reported as needing a restart; the running next hop stays', async () => {
    await withHost({}, async (h) => {
      const cfg = JSON.parse(readFileSync(h.configFile, 'utf8')) as Record<string, unknown>;
      writeFileSync(h.configFile, JSON.stringify({ ...cfg, delivery: { mode: 'relay', nextHop: { host: 'mx.example' } } }));
      await h.host.reload('test');
      await eventually('restart-only change reported', () => h.host.status().restartNeeded.includes('delivery'));
      assert.ok(h.logs.some((l) => String(l.msg) === 'config delivery changed: that takes a restart; the running values stay'));
    });
  });
});

describe('hot reload: rule files and their config entries, helpers', () => {
  it('deleting a rule file that still has a settings entry removes the rule, with a warning about the entry', async () => {
    await withHost({ rules: { 'edit.ts': variant('one') }, config: { rules: { settings: { edit: { priority: 5 } } } }, watch: true }, async (h) => {
      assert.equal(await rcptReply(h.port, 'x@localhost'), '550 5.7.1 one');
      rmSync(join(h.rulesDir, 'edit.ts'));
      await eventually('removed', () => !h.host.status().rules.includes('edit'));
      assert.equal(h.host.status().reloads.failed, 0);
      assert.equal(await rcptReply(h.port, 'x@localhost'), '250 2.1.5 Accepted');
      const warning = `/rules/settings/edit: no rule named "edit" was found in ${h.rulesDir}; the entry is ignored`;
      assert.deepEqual(h.host.status().warnings, [warning]);
      assert.ok(h.logs.some((l) => l.level === 40 && l.msg === warning));
    });
  });

  it('a helper in lib/ is imported by the rule, not loaded as a rule, and saving it reloads the rule', async () => {
    const helper = (prefix: string) => `export function blocked(address: string): boolean { return address.startsWith('${prefix}'); }\n`;
    const user = `import { defineRule, next, reject } from 'portcullis/sdk';
import { blocked } from './lib/util';
export default defineRule({ name: 'uses-helper', phases: { rcpt: (ev) => (blocked(ev.rcpt.address) ? reject(550, 'blocked by the helper') : next()) } });
`;
    await withHost({ rules: { 'uses-helper.ts': user, 'lib/util.ts': helper('x@') }, watch: true }, async (h) => {
      assert.deepEqual(h.host.status().rules, ['uses-helper']);
      assert.equal(await rcptReply(h.port, 'x@localhost'), '550 5.7.1 blocked by the helper');
      writeFileSync(join(h.rulesDir, 'lib', 'util.ts'), helper('y@'));
      await eventually('the helper\'s change acts', async () => (await rcptReply(h.port, 'y@localhost')) === '550 5.7.1 blocked by the helper');
      assert.equal(await rcptReply(h.port, 'x@localhost'), '250 2.1.5 Accepted');
      assert.deepEqual(h.host.status().lastReload?.changed, ['rule uses-helper changed']);
      assert.equal(h.host.status().reloads.failed, 0);
    });
  });
});
