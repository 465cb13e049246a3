/**
 * The certificate STARTTLS presents (RFC 3207), read from the config's `tls.key` and
 * `tls.cert` files and swapped in without a restart: when the files change (a renewal
 * writing new ones, or re-pointing Let's Encrypt's live/ symlinks) and at every reload
 * (SIGHUP, `portcullis reload`). smtp-server builds each new connection's TLS socket from
 * its current secure context, so a swap reaches the next STARTTLS; a session already in
 * TLS keeps the certificate it was shown. Files that do not load (half written, key and
 * certificate not matching yet) never replace a working certificate: the problem is
 * logged, and the next change is tried again.
 */
import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { basename, dirname, resolve } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type { Logger } from 'pino';
import { ConfigError, type Config } from '../config/config.js';

type TlsFiles = NonNullable<Config['tls']>;

/** A key and certificate chain that load together, and what to say about them in the log. */
export interface Certificate {
  key: Buffer;
  cert: Buffer;
  /** The server certificate's subject (`CN=mx.example.org`), issuer, expiry and SHA-256 fingerprint. */
  subject: string;
  issuer: string;
  validTo: Date;
  fingerprint: string;
}

/** Editors and renewal tools write the two files one after the other: wait for quiet. */
const DEBOUNCE_MS = 100;

/** Reads and checks the files; a ConfigError names the one that is wrong. */
export function readCertificate(files: TlsFiles): Certificate {
  const read = (which: 'key' | 'cert'): Buffer => {
    try {
      return readFileSync(files[which]);
    } catch (e) {
      throw new ConfigError('TLS files', [`/tls/${which}: cannot read ${files[which]}: ${(e as Error).message}`]);
    }
  };
  const [key, cert] = [read('key'), read('cert')];
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (e) {
    throw new ConfigError('TLS files', [`/tls/cert: ${files.cert} is not a PEM certificate: ${(e as Error).message}`]);
  }
  try {
    createSecureContext({ key, cert }); // a key that is not PEM, or not the certificate's, fails here
  } catch (e) {
    throw new ConfigError('TLS files', [`/tls/key: ${files.key} does not go with ${files.cert}: ${(e as Error).message}`]);
  }
  return { key, cert, subject: x509.subject.replace(/\n/g, ', '), issuer: x509.issuer.replace(/\n/g, ', '), validTo: new Date(x509.validTo), fingerprint: x509.fingerprint256 };
}

/** What smtp-server needs from us: its TLS options, and the call that rebuilds its secure context from them. */
export interface TlsServer {
  updateSecureContext(options: SecureContextOptions): void;
}

export class TlsCertificate {
  private files: TlsFiles | undefined;
  private current: Certificate | null = null;
  private watcher: FSWatcher | null = null;
  private watching = false;
  /** Re-pointing the watcher is serialised: two quick config changes must not leave two watchers. */
  private rewatching: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly server: TlsServer, private readonly log: Logger) {}

  /** The certificate being presented, if any. */
  get certificate(): Certificate | null {
    return this.current;
  }

  /**
   * Loads `files` (the config's `tls`) now. At start a problem throws (the host does not
   * start with a certificate it cannot present); later it is logged and the certificate
   * in use stays. Unchanged files change nothing.
   */
  load(files: TlsFiles | undefined, reason: string, opts: { throwOnError?: boolean } = {}): void {
    const moved = JSON.stringify(files) !== JSON.stringify(this.files);
    this.files = files;
    if (moved && this.watching) void this.rewatch();
    if (!files) return;
    let c: Certificate;
    try {
      c = readCertificate(files);
    } catch (e) {
      if (opts.throwOnError || !(e instanceof ConfigError)) throw e;
      this.log.error({ reason, problems: e.problems }, `TLS certificate not reloaded (${reason}), the one in use stays: ${e.problems.join('; ')}`);
      return;
    }
    if (this.current && c.key.equals(this.current.key) && c.cert.equals(this.current.cert)) return;
    this.server.updateSecureContext({ key: c.key, cert: c.cert });
    const first = !this.current;
    this.current = c;
    const info = { subject: c.subject, issuer: c.issuer, validTo: c.validTo.toISOString(), fingerprint: c.fingerprint, reason };
    this.log.info(info, `TLS certificate ${first ? 'loaded' : 'reloaded'}: ${c.subject}, valid until ${info.validTo} (${reason})`);
    if (c.validTo.getTime() < Date.now()) this.log.warn(info, `TLS certificate ${c.subject} expired on ${info.validTo}: clients that verify it will not send over TLS`);
  }

  /** Watches the files' directories (a symlink re-pointed or a file renamed over counts); resolves once watching. */
  async watch(): Promise<void> {
    this.watching = true;
    await this.rewatch();
  }

  private rewatch(): Promise<void> {
    this.rewatching = this.rewatching.then(() => this.watchFiles());
    return this.rewatching;
  }

  private async watchFiles(): Promise<void> {
    await this.watcher?.close();
    this.watcher = null;
    const files = this.files;
    if (!files || !this.watching) return;
    const names = new Set([resolve(files.key), resolve(files.cert)]);
    const dirs = [...new Set([...names].map((f) => dirname(f)))];
    const w = (this.watcher = watch(dirs, { ignoreInitial: true, depth: 0 }));
    w.on('all', (_event, path) => {
      if (!names.has(resolve(path))) return;
      if (this.timer) clearTimeout(this.timer);
      this.timer = setTimeout(() => {
        this.timer = null;
        this.load(this.files, `changed: ${basename(path)}`);
      }, DEBOUNCE_MS);
    });
    w.on('error', (e) => this.log.warn({ err: e }, `watching the TLS files: ${(e as Error).message}`));
    await new Promise<void>((ok) => w.once('ready', () => ok()));
  }

  async close(): Promise<void> {
    this.watching = false;
    if (this.timer) clearTimeout(this.timer);
    await this.rewatching;
    await this.watcher?.close();
  }
}
