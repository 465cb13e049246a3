/**
 * Inbound TLS and AUTH as a production host runs them: STARTTLS (RFC 3207) presents the
 * certificate from the config's files, and a new one as soon as the files are replaced
 * (or re-pointed, as Let's Encrypt's live/ symlinks are), without a restart; AUTH PLAIN
 * (RFC 4954) over that TLS with the hash `portcullis passwd` printed. Certificates are
 * made here with openssl.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import nodemailer from 'nodemailer';
import { ROOT } from '../host/paths.js';
import { eventually, RawSmtp, spooled, startTestHost, tempDir, type TestHost } from './helpers.js';

const openssl = spawnSync('openssl', ['version'], { encoding: 'utf8' });
const skip = openssl.status === 0 ? false : 'openssl is not installed: cannot make certificates (apt-get install openssl)';

/** A self-signed certificate for `cn` (also its DNS name), as key and cert files named `<name>.key` / `<name>.crt` in `dir`. */
function makeCert(dir: string, name: string, cn: string): { key: string; cert: string } {
  const key = join(dir, `${name}.key`);
  const cert = join(dir, `${name}.crt`);
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', `/CN=${cn}`, '-addext', `subjectAltName=DNS:${cn}`, '-keyout', key, '-out', cert], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return { key, cert };
}

/** Opens a session, says EHLO and STARTTLS, and returns the CN of the certificate the server presents. */
async function starttlsSubject(port: number): Promise<string> {
  const sock = netConnect({ host: '127.0.0.1', port });
  let buf = '';
  const line = (re: RegExp) => new Promise<string>((ok, fail) => {
    const t = setTimeout(() => fail(new Error(`no ${re} within 5 s: ${JSON.stringify(buf)}`)), 5000);
    const look = () => {
      const m = re.exec(buf);
      if (!m) return;
      buf = buf.slice(m.index + m[0].length);
      sock.off('data', onData);
      clearTimeout(t);
      ok(m[0]);
    };
    const onData = (d: Buffer) => {
      buf += d.toString('latin1');
      look();
    };
    sock.on('data', onData);
    look();
  });
  await line(/^220 .*\r\n/m);
  sock.write('EHLO client.example\r\n');
  assert.match(await line(/^250 .*\r\n/m), /^250 /);
  sock.write('STARTTLS\r\n');
  assert.match(await line(/^220 .*\r\n/m), /^220 2\.0\.0 /);
  const secure = tlsConnect({ socket: sock, rejectUnauthorized: false });
  await new Promise<void>((ok, fail) => secure.once('secureConnect', ok).once('error', fail));
  const cn = String(secure.getPeerCertificate().subject.CN);
  secure.end();
  return cn;
}

/** Replaces `target` with `source` in one rename, as a renewal tool does. */
function replaceWith(source: string, target: string): void {
  renameSync(source, target);
}

function reloadedLogs(h: TestHost, cn: string): Record<string, unknown>[] {
  return h.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith(`TLS certificate reloaded: CN=${cn},`));
}

describe('STARTTLS certificate', { skip }, () => {
  it('is the configured one, and a replaced one is presented to the next connection without a restart', async () => {
    const dir = tempDir();
    try {
      const tls = makeCert(dir, 'live', 'mx1.test');
      const h = await startTestHost({ config: { tls }, watch: true });
      try {
        assert.equal(await starttlsSubject(h.port), 'mx1.test');
        const next = makeCert(dir, 'new', 'mx2.test');
        replaceWith(next.key, tls.key);
        replaceWith(next.cert, tls.cert);
        await eventually('the host logs the new certificate', () => reloadedLogs(h, 'mx2.test').length > 0);
        assert.equal(await starttlsSubject(h.port), 'mx2.test');
        assert.equal(reloadedLogs(h, 'mx2.test')[0]!.reason, 'changed: live.crt');
      } finally {
        await h.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('follows symlinks re-pointed to a new archive, as certbot renews live/', async () => {
    const dir = tempDir();
    try {
      const archive = join(dir, 'archive');
      const live = join(dir, 'live');
      mkdirSync(archive);
      mkdirSync(live);
      makeCert(archive, 'v1', 'old.test');
      const tls = { key: join(live, 'privkey.pem'), cert: join(live, 'fullchain.pem') };
      symlinkSync('../archive/v1.key', tls.key);
      symlinkSync('../archive/v1.crt', tls.cert);
      const h = await startTestHost({ config: { tls }, watch: true });
      try {
        assert.equal(await starttlsSubject(h.port), 'old.test');
        makeCert(archive, 'v2', 'renewed.test');
        // certbot: a new link beside the old one, renamed over it (atomic).
        symlinkSync('../archive/v2.key', `${tls.key}.new`);
        renameSync(`${tls.key}.new`, tls.key);
        symlinkSync('../archive/v2.crt', `${tls.cert}.new`);
        renameSync(`${tls.cert}.new`, tls.cert);
        await eventually('the host logs the renewed certificate', () => reloadedLogs(h, 'renewed.test').length > 0);
        assert.equal(await starttlsSubject(h.port), 'renewed.test');
      } finally {
        await h.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is read again at a reload when nothing watches the files, and a broken replacement keeps the working one', async () => {
    const dir = tempDir();
    try {
      const tls = makeCert(dir, 'live', 'first.test');
      const h = await startTestHost({ config: { tls }, watch: false });
      try {
        assert.equal(await starttlsSubject(h.port), 'first.test');
        // A key that does not go with the certificate (only the certificate was renewed):
        // the reload reports it and STARTTLS keeps presenting the working pair.
        const other = makeCert(dir, 'other', 'second.test');
        replaceWith(other.cert, tls.cert);
        await h.host.reload('SIGHUP');
        assert.equal(await starttlsSubject(h.port), 'first.test');
        const err = h.logs.find((l) => typeof l.msg === 'string' && l.msg.startsWith('TLS certificate not reloaded (reload), the one in use stays: /tls/key:'));
        assert.ok(err, 'the mismatch is logged');
        replaceWith(other.key, tls.key);
        await h.host.reload('SIGHUP');
        assert.equal(await starttlsSubject(h.port), 'second.test');
        assert.equal(reloadedLogs(h, 'second.test')[0]!.reason, 'reload');
      } finally {
        await h.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('tls in the config', { skip }, () => {
  it('takes effect at a reload: STARTTLS is offered from the next session, with no restart', async () => {
    const dir = tempDir();
    try {
      const tls = makeCert(dir, 'added', 'added.test');
      const h = await startTestHost({ watch: false });
      try {
        const { c } = await RawSmtp.open(h.port);
        assert.doesNotMatch(await c.cmd('EHLO client.example'), /STARTTLS/);
        c.end();
        const cfg = JSON.parse(readFileSync(h.configFile, 'utf8')) as Record<string, unknown>;
        writeFileSync(h.configFile, JSON.stringify({ ...cfg, tls }));
        await h.host.reload('SIGHUP');
        assert.deepEqual(h.host.status().restartNeeded, []);
        assert.equal(await starttlsSubject(h.port), 'added.test');
      } finally {
        await h.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('portcullis start', () => {
  it('refuses to start with TLS files it cannot read or a plain-text password: exit 78, the problem named', () => {
    const dir = tempDir();
    try {
      const start = (config: object) => {
        writeFileSync(join(dir, 'config.json'), JSON.stringify({ listen: ['127.0.0.1:0'], admin: { listen: '127.0.0.1:0' }, dataDir: join(dir, 'data'), watch: false, ...config }));
        return spawnSync(process.execPath, [join(ROOT, 'bin', 'portcullis.js'), 'start', '--config', join(dir, 'config.json')], { encoding: 'utf8', timeout: 30_000 });
      };
      const missing = start({ tls: { key: join(dir, 'nope.key'), cert: join(dir, 'nope.crt') } });
      assert.equal(missing.status, 78);
      assert.equal(missing.stderr, `portcullis: invalid config TLS files:\n  /tls/key: cannot read ${join(dir, 'nope.key')}: ENOENT: no such file or directory, open '${join(dir, 'nope.key')}'\n`);
      const plain = start({ auth: { users: { alice: 'hunter2' } } });
      assert.equal(plain.status, 78);
      assert.equal(plain.stderr, `portcullis: invalid config ${join(dir, 'config.json')}:\n  /auth/users/alice: a plain-text password; only scrypt hashes are accepted: run "portcullis passwd alice" and put the line it prints here\n`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('AUTH with a hash from portcullis passwd, over STARTTLS', { skip }, () => {
  let dir: string;
  let h: TestHost;
  let ca: Buffer;
  const transport = (pass: string) => nodemailer.createTransport({
    host: '127.0.0.1', port: h.port, secure: false, requireTLS: true,
    tls: { ca, servername: 'mx.auth.test' }, // verified against the test's own certificate
    auth: { user: 'alice', pass }, connectionTimeout: 5000, greetingTimeout: 5000, socketTimeout: 10_000,
  });

  before(async () => {
    dir = tempDir();
    const tls = makeCert(dir, 'mx', 'mx.auth.test');
    ca = readFileSync(tls.cert);
    const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'portcullis.js'), 'passwd', 'alice'], { input: 'correct horse battery\n', encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const hash = r.stdout.trimEnd();
    assert.match(r.stdout, /^scrypt\$32768\$8\$1\$[0-9a-f]{32}\$[0-9a-f]{64}\n$/);
    // allowInsecure stays false: AUTH only after STARTTLS (RFC 4954 §4).
    h = await startTestHost({ config: { tls, auth: { users: { alice: hash } }, relayNetworks: [] } });
  });
  after(async () => {
    await h?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('logs in with the password, and may relay', async () => {
    const t = transport('correct horse battery');
    try {
      const info = await t.sendMail({ envelope: { from: 'alice@localhost', to: ['friend@elsewhere.example'] }, raw: 'Subject: hi\r\n\r\nhello\r\n' });
      assert.match(info.response, /^250 2\.0\.0 Ok: queued as /);
    } finally {
      t.close();
    }
    const [msg] = spooled(h.dataDir);
    assert.deepEqual(msg?.env.rcptTo, ['friend@elsewhere.example']);
    assert.match(msg!.eml.toString(), /with ESMTPSA id /, 'Received: says TLS and AUTH (RFC 3848)');
  });

  it('refuses a wrong password with 535 5.7.8', async () => {
    const t = transport('correct horse');
    try {
      await assert.rejects(t.sendMail({ envelope: { from: 'alice@localhost', to: ['friend@elsewhere.example'] }, raw: 'Subject: hi\r\n\r\nhello\r\n' }),
        (e: { response?: string }) => e.response === '535 5.7.8 Authentication credentials invalid');
    } finally {
      t.close();
    }
  });
});
