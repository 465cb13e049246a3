/**
 * The spool queue: delivers what is in `spool/new/` to its next hops (or into the mailbox
 * folder when a recipient has none), retries with exponential backoff, bounces what fails
 * for good or for too long.
 *
 * The spool file is never rewritten: it stays the one copy of the message until every
 * recipient is done (delivered, or bounced), then it is removed. Retry state lives beside
 * it in `spool/state/<id>.json` (attempts, next attempt, last error, recipients already
 * done), replaced atomically (write, fsync, rename, directory fsync), so it survives
 * kill -9. The age limit counts from the envelope's receivedAt, which never changes.
 *
 * At-least-once: a crash after a next hop said 250 but before the spool file (or the state
 * naming that recipient done) is gone delivers to that recipient once more after the
 * restart. That is the only way a message is delivered twice; it is never lost.
 */
import { mkdirSync } from 'node:fs';
import { readdir, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { DeliveryConfig } from '../config/config.js';
import type { Counters } from '../metrics.js';
import { replaceFile, type Spool, type SpoolEnvelope } from '../spool/spool.js';
import { spoolBounce } from './bounce.js';
import type { RcptResult } from './nexthop.js';
import type { Routes } from './routes.js';

interface RetryState {
  attempts: number;
  nextAttemptAt: number;
  lastError: string | null;
  /** Recipients delivered or bounced already: never sent to again. */
  done: string[];
}

export interface QueueDeps {
  spool: Spool;
  routes: Routes;
  config: DeliveryConfig['queue'];
  hostname: string;
  dataDir: string;
  log: Logger;
  counters: Counters;
}

export class Queue {
  /** Message id → when it may next be tried. */
  private readonly due = new Map<string, number>();
  private readonly running = new Map<string, Promise<void>>();
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly stateDir: string;

  constructor(private readonly d: QueueDeps) {
    this.stateDir = join(d.dataDir, 'spool', 'state');
    mkdirSync(this.stateDir, { recursive: true });
  }

  /** Picks up what a previous run left in the spool (after a crash too). */
  async start(): Promise<void> {
    if (this.d.config.hold) {
      this.d.log.info('delivery queue on hold: spooled messages stay in spool/new');
      return;
    }
    const ids = await this.d.spool.list('spool');
    const known = new Set(ids);
    for (const id of ids) this.due.set(id, (await this.readState(id))?.nextAttemptAt ?? 0);
    // State whose message is gone (a crash between removing the two), or half written.
    for (const f of await readdir(this.stateDir)) {
      if (f.endsWith('.tmp') || !known.has(f.slice(0, -5))) await unlink(join(this.stateDir, f)).catch(() => undefined);
    }
    if (ids.length) this.d.log.info({ messages: ids.length }, `delivery queue: ${ids.length} message(s) in the spool`);
    this.kick();
  }

  /** A message just spooled: try it soon. */
  add(id: string): void {
    if (this.d.config.hold || this.closed) return;
    this.due.set(id, 0);
    this.kick();
  }

  /**
   * Stops starting attempts; `abort` (closing the next hops' connections) makes those in
   * flight end now as deferred, their state written, instead of after a timeout.
   */
  async close(abort: () => void): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    abort();
    await Promise.allSettled([...this.running.values()]);
  }

  /** Starts what is due, up to the concurrency limit; sets a timer for the next one. */
  private kick(): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const now = Date.now();
    let next = Infinity;
    for (const [id, at] of this.due) {
      if (this.running.size >= this.d.config.concurrency) break;
      if (this.running.has(id)) continue; // its attempt decides when it is due again
      if (at > now) {
        next = Math.min(next, at);
        continue;
      }
      this.due.delete(id);
      const p = this.attempt(id)
        .catch((e: unknown) => {
          // Unexpected (a corrupt file, a bug): keep the message and try later rather than lose it.
          this.d.log.error({ id, err: e }, `delivery of ${id} failed unexpectedly: ${(e as Error).message}; retrying later`);
          this.due.set(id, Date.now() + this.d.config.retryMaxMs);
        })
        .finally(() => {
          this.running.delete(id);
          this.kick();
        });
      this.running.set(id, p);
    }
    if (next < Infinity && this.running.size < this.d.config.concurrency) {
      this.timer = setTimeout(() => this.kick(), Math.max(1, next - now));
      this.timer.unref();
    }
  }

  private async attempt(id: string): Promise<void> {
    let file: { envelope: SpoolEnvelope; message: Buffer };
    try {
      file = await this.d.spool.read('spool', id);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      return this.removeState(id);
    }
    const { envelope: env, message } = file;
    const state = (await this.readState(id)) ?? { attempts: 0, nextAttemptAt: 0, lastError: null, done: [] };
    const done = new Set(state.done);
    const pending = env.rcptTo.filter((r) => !done.has(r));
    const results = await this.d.routes.send(this.d.spool, env, pending, message);
    const log = { id, from: env.mailFrom, attempt: state.attempts + 1 };
    const accepted = results.filter((r) => r.status === 'accepted');
    for (const r of accepted) {
      done.add(r.rcpt);
      this.d.log.info({ ...log, rcpt: r.rcpt, via: r.remote ?? 'mailbox' }, `delivered ${id} to <${r.rcpt}> via ${r.remote ?? 'the mailbox folder'}: ${r.text}`);
      this.d.counters.inc('deliveries_total', { path: 'queue', result: 'delivered' });
    }
    const expired = Date.now() - Date.parse(env.receivedAt) > this.d.config.maxAgeHours * 3_600_000;
    const failed = results.filter((r) => r.status === 'refused' || (expired && r.status === 'deferred'));
    if (failed.length && (await this.bounce(env, message, failed, expired))) for (const r of failed) done.add(r.rcpt);
    const left = env.rcptTo.filter((r) => !done.has(r));
    if (!left.length) {
      await this.d.spool.remove('spool', id);
      await this.removeState(id);
      return;
    }
    // RFC 5321 §4.5.4.1: retry with growing intervals; the age limit then gives up.
    const attempts = state.attempts + 1;
    const wait = Math.min(this.d.config.retryBaseMs * 2 ** (attempts - 1), this.d.config.retryMaxMs);
    const lastError = results.find((r) => r.status !== 'accepted')?.text ?? null;
    await this.writeState(id, { attempts, nextAttemptAt: Date.now() + wait, lastError, done: [...done] });
    this.d.log.info({ ...log, rcpts: left, wait, err: lastError }, `deferred ${id} for ${left.map((r) => `<${r}>`).join(', ')}: ${lastError}; retry in ${Math.round(wait / 1000)} s`);
    this.d.counters.inc('deliveries_total', { path: 'queue', result: 'deferred' }, left.length);
    if (!this.closed) {
      this.due.set(id, Date.now() + wait);
    }
  }

  /** Gives up on `failed` (a bounce, unless none is wanted); false when the bounce could not be spooled. */
  private async bounce(env: SpoolEnvelope, message: Buffer, failed: RcptResult[], expired: boolean): Promise<boolean> {
    const reason = expired ? `still undeliverable after ${this.d.config.maxAgeHours} hours` : 'refused by the next hop';
    return spoolBounce(this.d, { original: env, message, failures: failed, reason, path: 'queue' }, (id) => this.add(id));
  }

  private statePath(id: string): string {
    return join(this.stateDir, `${id}.json`);
  }

  private async readState(id: string): Promise<RetryState | null> {
    try {
      return JSON.parse(await readFile(this.statePath(id), 'utf8')) as RetryState;
    } catch {
      return null; // none yet, or torn by a crash before its rename: start over (at-least-once)
    }
  }

  private async writeState(id: string, s: RetryState): Promise<void> {
    await replaceFile(this.statePath(id), Buffer.from(JSON.stringify(s)));
  }

  private async removeState(id: string): Promise<void> {
    await unlink(this.statePath(id)).catch(() => undefined);
  }
}
