/**
 * DKIM, DMARC and ARC facts (through mailauth) and our Authentication-Results header
 * (RFC 8601), against a real resolver: dnsmasq serves the SPF policies, the DKIM key
 * (`sel._domainkey.<domain>`) and the DMARC policies (`_dmarc.<domain>`) as TXT records.
 * Messages are signed in the test with mailauth's own signer and a key made here.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, it } from 'node:test';
import { dkimSign } from 'mailauth/lib/dkim/sign.js';
import { nodeBackend } from '../host/dns/backend.js';
import { checkMessageAuth } from '../host/dns/auth.js';
import { authResultsValue, withoutForgedAuthResults } from '../host/delivery/auth-results.js';
import { dnsServersFor, dnsServersMissing, startSilentDns } from './dns-servers.js';
import { RawSmtp, spooled, startTestHost, type TestHost } from './helpers.js';

const skip = dnsServersMissing();
if (skip) console.log(`# skipping the real-DNS DKIM/DMARC tests: ${skip}`);

const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
const pem = privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
const p = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');

const ZONES = {
  ipZones: { 'zen.test': ['127.0.0.99 :127.0.0.2:SBL'] }, // rbldnsd wants a zone
  domainZones: {},
  localDomain: 'mail.test',
  mx: [],
  hosts: ['signed.example,192.0.2.61', 'strict.example,192.0.2.62', 'careful.example,192.0.2.63'],
  spf: {
    'signed.example': 'v=spf1 ip4:127.0.0.61 -all',
    'strict.example': 'v=spf1 ip4:127.0.0.61 -all',
    'careful.example': 'v=spf1 ip4:127.0.0.61 -all',
    'sel._domainkey.signed.example': `v=DKIM1; k=rsa; p=${p}`,
    'sel._domainkey.strict.example': `v=DKIM1; k=rsa; p=${p}`,
    '_dmarc.signed.example': 'v=DMARC1; p=none',
    '_dmarc.strict.example': 'v=DMARC1; p=reject',
    '_dmarc.careful.example': 'v=DMARC1; p=quarantine',
  },
};

const HOST = 'mx.portcullis.test';

const QUIET_DNS_RULES = {
  'spamhaus-zen': { enabled: false },
  'spamhaus-dbl': { enabled: false },
  'invalid-recipient': { options: { dnsbl: '' } },
  'identical-sender-rcpt': { options: { dnsbl: '' } },
  'subject-spam': { options: { dnsbl: '' } },
};

const message = (from: string, subject: string, extra = '') =>
  `${extra}From: <${from}>\r\nTo: <user@localhost>\r\nSubject: ${subject}\r\nDate: Tue, 1 Dec 2026 00:00:00 +0000\r\nMessage-ID: <${subject}@test>\r\n\r\nhello from the test\r\n`;

async function signed(raw: string, domain: string): Promise<string> {
  // mailauth 4's signer reads `signatureData` (its .d.ts describes the top-level fields of later versions).
  const r = await dkimSign(raw, { canonicalization: 'relaxed/relaxed', signatureData: [{ signingDomain: domain, selector: 'sel', privateKey: pem }] } as never);
  assert.deepEqual(r.errors, []);
  return r.signatures + raw;
}

/** One session from `ip`: MAIL FROM `from`, RCPT user@localhost, the message; the end-of-data reply. */
async function send(port: number, ip: string, from: string, raw: string): Promise<string> {
  const { c } = await RawSmtp.open(port, ip);
  try {
    await c.cmd('EHLO mx.example.net');
    assert.match(await c.cmd(`MAIL FROM:<${from}>`), /^250 /);
    assert.match(await c.cmd('RCPT TO:<user@localhost>'), /^250 /);
    assert.match(await c.cmd('DATA'), /^354 /);
    return await c.cmd(`${raw.replace(/\r\n\./g, '\r\n..')}.`);
  } finally {
    c.end();
  }
}

const QUEUED = /^250 2\.0\.0 Ok: queued as \S+$/;

const arOf = (eml: string) => eml.split('\r\n').find((l) => l.startsWith('Authentication-Results:'));

describe('DKIM and DMARC facts and Authentication-Results, against dnsmasq', { skip: skip ?? false }, () => {
  const dns = dnsServersFor(ZONES, 'portcullis-dkim-');

  async function host(settings: Record<string, unknown>): Promise<TestHost> {
    return startTestHost({ builtin: true, config: { hostname: HOST, dns: { servers: [dns.server] }, delivery: { queue: { hold: true } }, mailboxes: ['user@localhost'], rules: { settings: { ...QUIET_DNS_RULES, ...settings } } } });
  }

  it('checkMessageAuth: a signed message passes DKIM and DMARC; a changed body fails DKIM', async () => {
    const raw = await signed(message('news@signed.example', 'unit'), 'signed.example');
    const spf = { result: 'pass', domain: 'signed.example', identity: 'mailfrom' } as const;
    const a = await checkMessageAuth(nodeBackend([dns.server], 2000), Buffer.from(raw), spf, { dmarc: true, arc: true }, 2000);
    const sample = a.dmarc?.sample ?? -1;
    assert.ok(Number.isInteger(sample) && sample >= 0 && sample < 100, `pct's sample is a whole number in 0–99: ${sample}`);
    assert.deepEqual(a, {
      dkim: [{ result: 'pass', domain: 'signed.example', selector: 'sel', aligned: true, comment: null }],
      arc: { result: 'none', instances: 0 },
      dmarc: {
        result: 'pass', domain: 'signed.example', policy: 'none', pct: 100, sample,
        published: { p: 'none', sp: 'none', adkim: 'r', aspf: 'r' }, alignment: { spf: 'signed.example', dkim: 'signed.example' },
      },
    });
    const bad = await checkMessageAuth(nodeBackend([dns.server], 2000), Buffer.from(raw.replace('hello from', 'HELLO from')), null, { dmarc: false, arc: false }, 2000);
    assert.deepEqual(bad.dkim.map((s) => [s.result, s.comment]), [['fail', 'body hash did not verify']]);
  });

  it('a signed message from an SPF-passing client gets our Authentication-Results; a forged one claiming our name is removed', async () => {
    const h = await host({ 'dmarc-policy': { enabled: true } });
    try {
      const forged = `Authentication-Results: ${HOST.toUpperCase()}; spf=pass smtp.mailfrom=paypal.example; dkim=pass\r\nAuthentication-Results: other.example; spf=none\r\n`;
      const raw = await signed(message('news@signed.example', 'good'), 'signed.example');
      assert.match(await send(h.port, '127.0.0.61', 'news@signed.example', forged + raw), QUEUED);
      const eml = spooled(h.dataDir)[0]!.eml.toString();
      assert.equal(arOf(eml), `Authentication-Results: ${HOST}; spf=pass smtp.mailfrom=signed.example; dkim=pass header.d=signed.example header.s=sel; dmarc=pass (p=none) header.from=signed.example`);
      assert.ok(!eml.includes('paypal.example'), 'the forged field with our authserv-id is gone');
      assert.ok(eml.includes('\r\nAuthentication-Results: other.example; spf=none\r\n'), "another host's field stays");
    } finally {
      await h.close();
    }
  });

  it('a tampered body: dkim=fail; p=reject with SPF and DKIM failing: 550 5.7.26 when dmarc-policy is on', async () => {
    const h = await host({ 'dmarc-policy': { enabled: true } });
    try {
      const raw = (await signed(message('news@strict.example', 'tampered'), 'strict.example')).replace('hello from', 'HELLO from');
      assert.equal(await send(h.port, '127.0.0.62', 'news@strict.example', raw), "550 5.7.26 Unauthenticated mail from strict.example is not accepted due to the domain's DMARC policy");
      assert.ok(h.logs.some((l) => l.rule === 'dmarc-policy' && l.msg === 'DMARC fail: header-from=strict.example p=reject sp=reject pct=100 adkim=r aspf=r disposition=reject dkim=fail:strict.example spf=fail:strict.example aligned-spf=- aligned-dkim=- client=127.0.0.62'), 'the report data is logged');
      // SPF passes, DKIM fails: DMARC passes through SPF, and the header says so.
      assert.match(await send(h.port, '127.0.0.61', 'news@strict.example', raw), QUEUED);
      assert.equal(arOf(spooled(h.dataDir)[0]!.eml.toString()), `Authentication-Results: ${HOST}; spf=pass smtp.mailfrom=strict.example; dkim=fail (body hash did not verify) header.d=strict.example header.s=sel; dmarc=pass (p=reject) header.from=strict.example`);
    } finally {
      await h.close();
    }
  });

  it('p=quarantine: the message is quarantined; onFail tag only tags', async () => {
    const h = await host({ 'dmarc-policy': { enabled: true } });
    try {
      assert.match(await send(h.port, '127.0.0.62', 'news@careful.example', message('news@careful.example', 'careful')), QUEUED);
      assert.equal(spooled(h.dataDir, 'quarantine').length, 1);
    } finally {
      await h.close();
    }
    const t = await host({ 'dmarc-policy': { enabled: true, options: { onFail: 'tag' } } });
    try {
      assert.match(await send(t.port, '127.0.0.62', 'news@strict.example', message('news@strict.example', 'tagged')), QUEUED);
      assert.match(spooled(t.dataDir)[0]!.eml.toString(), /\r\nX-DMARC: fail \(p=reject\) header\.from=strict\.example\r\n/);
      assert.ok(t.logs.some((l) => l.rule === 'dmarc-policy' && String(l.msg).startsWith('DMARC fail: header-from=strict.example p=reject sp=reject pct=100 adkim=r aspf=r disposition=none reason=local_policy ')), 'the report row says the site overrode the policy');
    } finally {
      await t.close();
    }
  });

  it('spf-check: SPF fail is refused at MAIL FROM with 550 5.7.23', async () => {
    const h = await host({ 'spf-check': { enabled: true } });
    try {
      const { c } = await RawSmtp.open(h.port, '127.0.0.62');
      await c.cmd('EHLO mx.example.net');
      assert.equal(await c.cmd('MAIL FROM:<news@signed.example>'), '550 5.7.23 SPF validation failed: signed.example does not designate 127.0.0.62 as permitted sender');
      c.end();
    } finally {
      await h.close();
    }
  });
});

describe('DKIM and DMARC when DNS does not answer', () => {
  it('are temperror within the deadline', async () => {
    const silent = await startSilentDns();
    try {
      const raw = await signed(message('news@signed.example', 'dead'), 'signed.example');
      const t0 = Date.now();
      const a = await checkMessageAuth(nodeBackend([silent.server], 300), Buffer.from(raw), null, { dmarc: true, arc: false }, 300);
      assert.ok(Date.now() - t0 < 1500, 'not blocked past the deadline');
      assert.deepEqual(a.dkim.map((s) => [s.result, s.domain, s.comment]), [['temperror', 'signed.example', 'DNS failure: ETIMEOUT']]);
      assert.equal(a.dmarc?.result, 'temperror');
      assert.equal(authResultsValue(HOST, { dmarc: a.dmarc! }), `${HOST}; dmarc=temperror header.from=signed.example`);
    } finally {
      await silent.close();
    }
  });
});

describe('forged Authentication-Results', () => {
  it('only fields naming our authserv-id go, folded lines with them', () => {
    const msg = Buffer.from(`Authentication-Results: mx.portcullis.test (forged);\r\n\tdkim=pass\r\nSubject: x\r\nAuthentication-Results: mx.portcullis.test.evil; spf=pass\r\n\r\nbody\r\nAuthentication-Results: mx.portcullis.test; body stays\r\n`);
    assert.equal(withoutForgedAuthResults(msg, HOST).toString(), 'Subject: x\r\nAuthentication-Results: mx.portcullis.test.evil; spf=pass\r\n\r\nbody\r\nAuthentication-Results: mx.portcullis.test; body stays\r\n');
  });
});
