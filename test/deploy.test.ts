/**
 * What deploy/ ships is usable as shipped: systemd accepts the unit, `portcullis check`
 * accepts the sample production config, and the two agree on how long a stop may take.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ROOT } from '../host/paths.js';
import { tempDir } from './helpers.js';

const UNIT = readFileSync(join(ROOT, 'deploy', 'portcullis.service'), 'utf8');
const INSTALLED = '/usr/local/bin/portcullis';

/** `Key=value` lines of the unit (the last one wins, as in systemd). */
function directives(unit: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of unit.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (m) out.set(m[1]!, m[2]!);
  }
  return out;
}

const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
const noSystemd = analyze.status === 0 ? false : 'systemd-analyze is not installed here: the unit is not verified (apt-get install systemd)';

describe('deploy/portcullis.service', () => {
  const d = directives(UNIT);

  it('runs the installed command as an unprivileged user that may bind port 25, reloads with SIGHUP, stops with SIGTERM', () => {
    assert.equal(d.get('ExecStart'), `${INSTALLED} start --config /etc/portcullis/config.json`);
    assert.equal(d.get('User'), 'portcullis');
    assert.equal(d.get('AmbientCapabilities'), 'CAP_NET_BIND_SERVICE');
    assert.equal(d.get('CapabilityBoundingSet'), 'CAP_NET_BIND_SERVICE');
    assert.equal(d.get('NoNewPrivileges'), 'yes');
    assert.equal(d.get('ProtectSystem'), 'strict');
    assert.equal(d.get('ReadWritePaths'), '/var/lib/portcullis');
    assert.equal(d.get('ExecReload'), '/bin/kill -HUP $MAINPID');
    assert.equal(d.get('KillSignal'), 'SIGTERM');
    assert.equal(d.get('Restart'), 'on-failure');
  });

  it('is accepted by systemd-analyze verify (with ExecStart pointing at this checkout\'s bin/portcullis.js)', { skip: noSystemd }, () => {
    // verify insists that ExecStart's program exists; on a machine where Portcullis is not
    // installed in /usr/local/bin, the checkout's own entry point stands in for it.
    const dir = tempDir();
    try {
      const unit = join(dir, 'portcullis.service');
      writeFileSync(unit, UNIT.replace(`ExecStart=${INSTALLED} `, `ExecStart=${join(ROOT, 'bin', 'portcullis.js')} `));
      const r = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8', cwd: dir });
      assert.equal(r.stderr, '', 'no complaint');
      assert.equal(r.status, 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('gives a stop more time than the sample config\'s grace for messages in flight', () => {
    const timeout = /^(\d+)s$/.exec(d.get('TimeoutStopSec') ?? '');
    assert.ok(timeout, 'TimeoutStopSec in seconds');
    const config = JSON.parse(readFileSync(join(ROOT, 'deploy', 'config.json'), 'utf8')) as { limits: { shutdownGraceMs: number } };
    // The grace, then closing the queue and the store: leave at least 10 s for those.
    assert.ok(Number(timeout[1]) * 1000 >= config.limits.shutdownGraceMs + 10_000);
  });
});

describe('deploy/config.json', () => {
  it('passes portcullis check: port 25, a next hop, TLS files', () => {
    const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'portcullis.js'), 'check', '--config', 'deploy/config.json'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.stderr, '');
    assert.equal(r.status, 0);
    assert.match(r.stdout, /^ok: config deploy\/config\.json\n/);
    const config = JSON.parse(readFileSync(join(ROOT, 'deploy', 'config.json'), 'utf8')) as { listen: string[]; delivery: { nextHop?: { port: number } }; tls?: object };
    assert.deepEqual(config.listen, ['0.0.0.0:25']);
    assert.equal(config.delivery.nextHop?.port, 10025);
    assert.ok(config.tls);
  });
});
