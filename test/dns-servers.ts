/**
 * Real DNS servers for the tests, on 127.0.0.1 high ports with zones the test writes:
 * Debian's rbldnsd serves the block lists (exactly the A/TXT answers DNSBLs give) and
 * dnsmasq is the resolver the host asks: it forwards the list zones to rbldnsd and
 * answers MX/A records for a local test domain itself. dnsmasq's cache is off and it
 * logs every query, so a test can count what reached DNS. `.ci/run` installs both.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before } from 'node:test';
import { Resolver } from 'node:dns/promises';
import { join } from 'node:path';

export const RBLDNSD = '/usr/sbin/rbldnsd';
export const DNSMASQ = '/usr/sbin/dnsmasq';

/** Why the real-DNS tests cannot run here, or null. CI (PORTCULLIS_REQUIRE_DNS=1) fails instead of skipping. */
export function dnsServersMissing(): string | null {
  const missing = [RBLDNSD, DNSMASQ].filter((p) => !existsSync(p));
  if (!missing.length) return null;
  const why = `${missing.join(' and ')} not installed (apt-get install rbldnsd dnsmasq-base)`;
  if (process.env.PORTCULLIS_REQUIRE_DNS === '1') throw new Error(why);
  return why;
}

export interface DnsZones {
  /** rbldnsd ip4set zones: zone → lines (`127.0.0.2 :127.0.0.2:text`). */
  ipZones: Record<string, string[]>;
  /** rbldnsd dnset zones: zone → lines (`spam.test :127.0.1.2:text`). */
  domainZones: Record<string, string[]>;
  /** Domain dnsmasq answers for from local data (unknown names there are NXDOMAIN). */
  localDomain: string;
  /** dnsmasq --mx-host / --host-record values. */
  mx: string[];
  hosts: string[];
  /**
   * SPF policies, domain → record (`'v=spf1 ip4:127.0.0.61 -all'`, no commas: dnsmasq
   * splits the option at them): dnsmasq serves each as the domain's TXT record and
   * answers other questions about the domain as having no such record (so an SPF check
   * sees "no record", not a failure).
   */
  spf?: Record<string, string>;
  /** NS records, domain → name servers (dnsmasq `--dns-rr`: it has no NS option of its own). */
  ns?: Record<string, string[]>;
  /** Addresses without reverse DNS, name → IPv4 (dnsmasq `--address`; `hosts` entries get a PTR record too). */
  address?: Record<string, string>;
  /** Reverse DNS, IPv4 → name (dnsmasq `--ptr-record`). */
  ptr?: Record<string, string>;
  /** More domains dnsmasq answers from local data only: names under them it does not know are NXDOMAIN (not refused). */
  local?: string[];
}

/** A domain name in DNS wire format, as hex (RFC 1035 §3.1): what `--dns-rr` takes as an NS record's data. */
const wireName = (name: string): string => Buffer.concat([...name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])), Buffer.from([0])]).toString('hex');

export interface DnsServers {
  /** The resolver's address for the host config: "127.0.0.1:PORT". */
  server: string;
  /** How many queries of `type` for `name` reached the resolver so far. */
  queries(name: string, type?: string): number;
  close(): Promise<void>;
}

/**
 * For a `describe`: real DNS servers serving `zones` to its tests, started in its `before`
 * hook and stopped (their directory removed) in its `after`. Read the fields inside tests.
 */
export function dnsServersFor(zones: DnsZones, prefix = 'portcullis-dns-'): DnsServers {
  let live: DnsServers | undefined;
  let dir = '';
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), prefix));
    live = await startDnsServers(dir, zones);
  });
  after(async () => {
    await live?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  const started = (): DnsServers => {
    if (!live) throw new Error('the DNS servers start in the before hook: read them inside a test');
    return live;
  };
  return {
    get server() {
      return started().server;
    },
    queries: (name, type) => started().queries(name, type),
    close: async () => started().close(),
  };
}

/** A port that was free a moment ago for both UDP and TCP (DNS servers bind both). */
async function freePort(): Promise<number> {
  for (;;) {
    const s = createSocket('udp4');
    await new Promise<void>((ok) => s.bind(0, '127.0.0.1', ok));
    const port = s.address().port;
    await new Promise<void>((ok) => s.close(() => ok()));
    const tcp = createServer();
    const free = await new Promise<boolean>((ok) => {
      tcp.once('error', () => ok(false));
      tcp.listen(port, '127.0.0.1', () => ok(true));
    });
    if (free) {
      await new Promise<void>((ok) => tcp.close(() => ok()));
      return port;
    }
  }
}

/** Children still running when the test process exits are killed (a failed test must not leave servers behind). */
const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

/** Starts a server; a port taken between the check and the start gets another try (3 in all). */
async function startServer(what: string, args: (port: number) => string[], probe: string): Promise<{ proc: ChildProcess; port: number }> {
  let last = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const proc = spawn(what, args(port), { stdio: ['ignore', 'ignore', 'pipe'] });
    children.add(proc);
    proc.once('exit', () => children.delete(proc));
    let stderr = '';
    proc.stderr!.on('data', (d: Buffer) => void (stderr += d.toString()));
    try {
      await waitAnswering(`127.0.0.1:${port}`, probe, proc, what);
      return { proc, port };
    } catch (e) {
      await stop(proc);
      last = `${(e as Error).message}: ${stderr.trim()}`;
    }
  }
  throw new Error(`could not start ${what}: ${last}`);
}

function stop(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((ok) => {
    p.once('exit', () => ok());
    p.kill('SIGTERM');
  });
}

/** Polls until `name` resolves through `server` (bounded: 5 s). */
async function waitAnswering(server: string, name: string, proc: ChildProcess, what: string): Promise<void> {
  const r = new Resolver({ timeout: 200, tries: 1 });
  r.setServers([server]);
  for (let i = 0; i < 25; i++) {
    if (proc.exitCode !== null) throw new Error(`${what} exited with ${proc.exitCode}`);
    try {
      await r.resolve4(name);
      return;
    } catch (e) {
      if ((e as { code?: string }).code === 'ENOTFOUND' || (e as { code?: string }).code === 'ENODATA') return;
    }
    await new Promise((ok) => setTimeout(ok, 200));
  }
  throw new Error(`${what} on ${server} did not answer within 5 s`);
}

export async function startDnsServers(dir: string, z: DnsZones): Promise<DnsServers> {
  chmodSync(dir, 0o755); // rbldnsd drops to nobody and must still read its zone files
  const specs: string[] = [];
  for (const [zone, lines] of Object.entries(z.ipZones)) {
    writeFileSync(join(dir, `${zone}.zone`), lines.join('\n') + '\n');
    specs.push(`${zone}:ip4set:${zone}.zone`);
  }
  for (const [zone, lines] of Object.entries(z.domainZones)) {
    writeFileSync(join(dir, `${zone}.zone`), lines.join('\n') + '\n');
    specs.push(`${zone}:dnset:${zone}.zone`);
  }
  const probe = `1.0.0.127.${Object.keys(z.ipZones)[0]!}`;
  const log = join(dir, 'dnsmasq.log');
  writeFileSync(log, '');
  const { proc: rbl, port: rblPort } = await startServer(RBLDNSD, (port) => ['-n', '-u', 'nobody', '-b', `127.0.0.1/${port}`, '-w', dir, '-t', '300', ...specs], probe);
  let dm: ChildProcess | undefined;
  try {
    const zones = [...Object.keys(z.ipZones), ...Object.keys(z.domainZones)];
    const started = await startServer(DNSMASQ, (port) => [
      '--keep-in-foreground', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--bind-interfaces', '--listen-address=127.0.0.1', `--port=${port}`,
      '--cache-size=0', '--user=root', '--log-queries', `--log-facility=${log}`, `--local=/${z.localDomain}/`,
      ...zones.map((zone) => `--server=/${zone}/127.0.0.1#${rblPort}`),
      ...z.mx.map((m) => `--mx-host=${m}`), ...z.hosts.map((h) => `--host-record=${h}`),
      ...Object.entries(z.spf ?? {}).flatMap(([domain, record]) => [`--local=/${domain}/`, `--txt-record=${domain},${record}`]),
      ...Object.entries(z.ns ?? {}).flatMap(([domain, servers]) => servers.map((ns) => `--dns-rr=${domain},2,${wireName(ns)}`)),
      ...(z.local ?? []).map((d) => `--local=/${d}/`),
      ...Object.entries(z.address ?? {}).map(([name, ip]) => `--address=/${name}/${ip}`),
      ...Object.entries(z.ptr ?? {}).map(([ip, name]) => `--ptr-record=${ip.split('.').reverse().join('.')}.in-addr.arpa,${name}`),
    ], probe);
    dm = started.proc;
    const server = `127.0.0.1:${started.port}`;
    return {
      server,
      queries: (name, type = 'A') => readFileSync(log, 'utf8').split('\n').filter((l) => l.includes(` query[${type}] ${name} from`)).length,
      close: async () => {
        await Promise.all([stop(rbl), dm ? stop(dm) : undefined]);
      },
    };
  } catch (e) {
    await Promise.all([stop(rbl), dm ? stop(dm) : undefined]);
    throw e;
  }
}

/** A DNS "server" that reads queries and never answers (a dead resolver, a firewalled list). */
export async function startSilentDns(): Promise<{ server: string; received: () => number; close: () => Promise<void> }> {
  const s = createSocket('udp4');
  let n = 0;
  s.on('message', () => void n++);
  await new Promise<void>((ok) => s.bind(0, '127.0.0.1', ok));
  return { server: `127.0.0.1:${s.address().port}`, received: () => n, close: () => new Promise((ok) => s.close(() => ok())) };
}
