/** Config validation: the JSON path and what was expected for each problem, defaults, syntax errors. */
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
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

  it('reports a JSON syntax error with line and column', () => {
    const [p] = problems('{\n  "hostname": "mx.example",\n  "banner": oops\n}');
    assert.match(p!, /config-\d+\.json:3:13: InvalidSymbol$/);
  });
});
