/** Config validation: the JSON path and what was expected for each problem, defaults, syntax errors. */
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../host/config/config.js';
import { tempDir } from './helpers.js';

const dir = tempDir();
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;

function configFile(content: unknown): string {
  const f = join(dir, `config-${++files}.json`);
  writeFileSync(f, typeof content === 'string' ? content : JSON.stringify(content));
  return f;
}

function problems(content: unknown): string[] {
  try {
    loadConfig(configFile(content));
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    return e.problems;
  }
  assert.fail('config was accepted');
}

describe('config validation', () => {
  it('an empty config is the embedded default', () => {
    const c = loadConfig(configFile({}));
    assert.deepEqual(c.listen, ['127.0.0.1:2525']);
    assert.deepEqual(c.localDomains, ['localhost']);
    assert.deepEqual(c.relayNetworks, ['127.0.0.0/8', '::1/128']);
    assert.deepEqual(c.exemptNetworks, []);
    assert.equal(c.rules.defaults.timeoutMs, 50);
    assert.equal(c.rules.defaults.failPolicy, 'tempfail');
  });

  it('names every problem with its JSON path and what was expected', () => {
    assert.deepEqual(
      problems({ listen: ['nowhere'], limits: { maxClients: 0, bogus: 1 }, rules: { settings: { x: { action: 'explode' } } }, typo: true }).sort(),
      [
        '/: unknown property "typo"',
        '/limits: unknown property "bogus"',
        '/limits/maxClients: must be >= 1',
        '/listen/0: must match pattern "^(\\[[0-9a-fA-F:.]+\\]|[^:\\s]+):[0-9]{1,5}$"',
        '/rules/settings/x/action: must be one of "enforce", "shadow", "quarantine", "tempfail"',
      ].sort(),
    );
  });

  it('checks networks and ports beyond the schema', () => {
    assert.deepEqual(problems({ relayNetworks: ['10.0.0.0/33', '999.1.1.1'], listen: ['127.0.0.1:70000'] }), [
      '/relayNetworks/0: prefix length must be 0–32',
      '/relayNetworks/1: "999.1.1.1" is not an IP address or network',
      '/listen/0: port must be 0–65535',
    ]);
  });

  it('DNS is off by default; --dns sets the resolver; a bad server entry names its path', () => {
    assert.deepEqual(loadConfig(configFile({})).dns, { servers: [], timeoutMs: 2000, cacheTtlSeconds: 1800 });
    assert.deepEqual(loadConfig(configFile({ dns: { timeoutMs: 500 } }), { dns: '127.0.0.1:5353' }).dns, { servers: ['127.0.0.1:5353'], timeoutMs: 500, cacheTtlSeconds: 1800 });
    assert.deepEqual(problems({ dns: { servers: ['resolver.example'], timeoutMs: 1 } }).sort(), [
      '/dns/servers/0: must match pattern "^(system|[0-9.]+(:[0-9]{1,5})?|\\[[0-9a-fA-F:.]+\\](:[0-9]{1,5})?|[0-9a-fA-F:]+)$"',
      '/dns/timeoutMs: must be >= 50',
    ]);
  });

  it('the store is SQLite by default; Redis needs exactly one of url, sentinels or cluster, and Redis settings need backend redis', () => {
    assert.deepEqual(loadConfig(configFile({})).store, {
      backend: 'sqlite',
      redis: { sentinelName: 'mymaster', keyPrefix: 'portcullis:', commandTimeoutMs: 500, queueLimit: 100000, whileDown: 'local' },
    });
    assert.equal(loadConfig(configFile({ store: { backend: 'redis', redis: { url: 'redis://10.0.0.5:6379/2' } } })).store.redis.url, 'redis://10.0.0.5:6379/2');
    assert.deepEqual(problems({ store: { backend: 'redis' } }), ['/store/redis: say exactly one of url, sentinels or cluster (got none)']);
    assert.deepEqual(problems({ store: { backend: 'redis', redis: { url: 'redis://a:1', cluster: ['b:2'] } } }), ['/store/redis: say exactly one of url, sentinels or cluster (got url and cluster)']);
    assert.deepEqual(problems({ store: { redis: { url: 'redis://a:1' } } }), ['/store/backend: is "sqlite", but store.redis.url is set: say "redis" to use it']);
    assert.deepEqual(problems({ store: { backend: 'memcached', redis: { url: 'http://a', sentinels: ['nohost'], whileDown: 'fail', keyPrefix: '' } } }).sort(), [
      '/store/backend: must be one of "sqlite", "redis"',
      '/store/redis/keyPrefix: must match pattern "^\\S+$"',
      '/store/redis/sentinels/0: must match pattern "^[^\\s:]+:[0-9]{1,5}$"',
      '/store/redis/url: must match pattern "^rediss?://"',
      '/store/redis/whileDown: must be one of "local", "ignore-counts"',
    ]);
  });

  it('scores are checked after DATA and the message by default; scores.phases names only rcpt, data and message, each once', () => {
    assert.deepEqual(loadConfig(configFile({})).scores, { phases: ['data', 'message'], tag: null, tempfail: null, reject: null, header: 'X-Portcullis-Score' });
    assert.deepEqual(problems({ scores: { phases: ['mail', 'rcpt', 'rcpt'] } }).sort(), [
      '/scores/phases/0: must be one of "rcpt", "data", "message"',
      '/scores/phases: must NOT have duplicate items (items ## 1 and 2 are identical)',
    ]);
  });

  it('the admin listener: loopback 8025 by default, --admin moves it or turns it off, never on an SMTP address, a token beyond loopback', () => {
    assert.deepEqual(loadConfig(configFile({})).admin, { listen: '127.0.0.1:8025', token: null, metrics: true });
    assert.deepEqual(loadConfig(configFile({}), { admin: '127.0.0.1:9999' }).admin, { listen: '127.0.0.1:9999', token: null, metrics: true });
    assert.equal(loadConfig(configFile({}), { admin: 'off' }).admin.listen, null);
    assert.equal(loadConfig(configFile({ admin: { listen: '[::1]:8025' } })).admin.listen, '[::1]:8025');
    assert.equal(loadConfig(configFile({ listen: ['127.0.0.1:0'], admin: { listen: '127.0.0.1:0' } })).admin.listen, '127.0.0.1:0'); // two fresh ports
    assert.deepEqual(problems({ listen: ['127.0.0.1:2525', '0.0.0.0:587'], admin: { listen: '192.0.2.1:587', token: 'a-token-of-16-chars' } }), [
      '/admin/listen: 192.0.2.1:587 is where SMTP listens too (/listen/1: 0.0.0.0:587): the admin listener needs an address of its own',
    ]);
    assert.deepEqual(problems({ admin: { listen: '[::]:8025' } }), [
      '/admin/token: required when admin.listen ([::]:8025) is not a loopback address: set a long random one (openssl rand -hex 32), or listen on 127.0.0.1',
    ]);
    assert.deepEqual(problems({ admin: { listen: '127.0.0.1:99999', token: 'short', port: 1 } }).sort(), [
      '/admin/token: must NOT have fewer than 16 characters',
      '/admin: unknown property "port"',
    ]);
    assert.deepEqual(problems({ admin: { listen: '127.0.0.1:99999' } }), ['/admin/listen: port must be 0–65535']);
  });

  it('reports a JSON syntax error once, as a sentence with its line and column', () => {
    const at = (text: string) => {
      const f = configFile(text);
      try {
        loadConfig(f);
      } catch (e) {
        assert.ok(e instanceof ConfigError);
        return e.lines.map((l) => l.slice(f.length));
      }
      assert.fail('config was accepted');
    };
    assert.deepEqual(at('{\n  "hostname": "mx.example"\n  "banner": "hi"\n}'), [':3:3: not valid JSON: a comma is missing before "banner"']);
    assert.deepEqual(at('{\n  "hostname": "mx.example",\n  "banner": oops\n}'), [':3:13: not valid JSON: "oops" is not JSON here (strings take double quotes; true, false and null are lower case)']);
    assert.deepEqual(at('{ "localDomains": ["a.example",],\n}'), [':1:32: not valid JSON: the comma before "]" has nothing after it (JSON allows no trailing comma)']);
    assert.deepEqual(at('{ "hostname": \'mx\' }'), [":1:15: not valid JSON: strings take double quotes, not single: \"'mx'\""]);
    assert.deepEqual(at('{ "hostname" "mx" }'), [':1:14: not valid JSON: a colon is missing after the property name, before "mx"']);
    assert.deepEqual(at('// mine\n{}'), [':1:1: not valid JSON: comments are not allowed in JSON']);
    assert.deepEqual(at('{ "limits": { "maxClients": 5 }'), [':1:32: not valid JSON: an object is not closed: "}" is missing before the end of the file']);
    assert.deepEqual(at(' \n'), [': the file is empty; write {} for the embedded defaults']);
  });

  it('the message of a syntax error names file:line:col once', () => {
    const f = configFile('{\n  "hostname": "mx.example"\n  "banner": "hi"\n}');
    assert.throws(() => loadConfig(f), { message: `invalid config ${f}:3:3: not valid JSON: a comma is missing before "banner"` });
  });
});

describe('relative paths in a config file', () => {
  it('are relative to the file\'s directory; defaults and command-line paths to the working directory', () => {
    const site = join(dir, 'site');
    mkdirSync(site, { recursive: true });
    const f = join(site, 'config.json');
    writeFileSync(f, JSON.stringify({
      dataDir: 'data',
      rules: { dirs: ['rules', '/srv/rules'] },
      tls: { key: 'tls/key.pem', cert: '/etc/ssl/cert.pem' },
      checker: { command: ['bin/filter', 'relative-arg'] },
    }));
    const c = loadConfig(f);
    assert.equal(c.dataDir, join(site, 'data'));
    assert.deepEqual(c.rules.dirs, [join(site, 'rules'), '/srv/rules']);
    assert.deepEqual(c.tls, { key: join(site, 'tls', 'key.pem'), cert: '/etc/ssl/cert.pem' });
    assert.deepEqual(c.checker?.command, [join(site, 'bin', 'filter'), 'relative-arg']);
    // Typed on the command line: relative to where it was typed.
    const typed = loadConfig(f, { dataDir: 'here', rulesDir: 'mine' });
    assert.equal(typed.dataDir, 'here');
    assert.deepEqual(typed.rules.dirs, [join(site, 'rules'), '/srv/rules', 'mine']);
    // A program name is found on PATH; the default data directory is the working directory's.
    writeFileSync(f, JSON.stringify({ checker: { command: ['spamc', '-c'] } }));
    assert.deepEqual(loadConfig(f).checker?.command, ['spamc', '-c']);
    assert.equal(loadConfig(f).dataDir, './data');
  });
});
