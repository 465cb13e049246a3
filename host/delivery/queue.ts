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
 *
 * The administrator's `portcullis queue retry|delete` reach the running queue through the
 * host's control socket (host/control.ts), because only the queue knows which attempt is
 * under way: a delete waits for it and then removes the message durably, and no attempt
 * starts for a message while an administrator's command works on it.
 */
import { mkdirSync } from 'node:fs';
import { readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { DeliveryConfig } from '../config/config.js';
import type { Metrics } from '../metrics.js';
import type { Spool, SpoolEnvelope } from '../spool/spool.js';
import { spoolBounce } from './bounce.js';
import type { RcptResult } from './nexthop.js';
import { firstAttempt, readRetryState, removeRetryState, stateDir, writeRetryState, type RetryState } from './retry-state.js';
import type { Routes } from './routes.js';

export interface QueueDeps {
  spool: Spool;
  routes: Routes;
  config: DeliveryConfig['queue'];
  hostname: string;
  dataDir: string;
  log: Logger;
  metrics: Metrics;
}

/** What `portcullis queue retry` found (see Queue.retry). */
export type RetryResult = 'due' | 'delivering' | 'held' | 'unknown';

/** What `portcullis queue delete` did (see Queue.delete). */
export type DeleteResult =
  | { kind: 'deleted'; envelope: SpoolEnvelope; done: string[] }
  /** An attempt under way when the delete came delivered (or bounced) the last recipients. */
  | { kind: 'delivered' }
  | { kind: 'unknown' };

export class Queue {
  /** Message id → when it may next be tried. */
  private readonly due = new Map<string, number>();
  private readonly running = new Map<string, Promise<void>>();
  /** Ids an administrator's command is working on: no attempt starts for them meanwhile. */
  private readonly admin = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly stateDir: string;

  constructor(private readonly d: QueueDeps) {
    this.stateDir = stateDir(d.dataDir);
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
      if (this.running.has(id) || this.admin.has(id)) continue; // its attempt (or the admin) decides when it is due again
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
    const state = (await this.readState(id)) ?? firstAttempt();
    const done = new Set(state.done);
    const pending = env.rcptTo.filter((r) => !done.has(r));
    const results = await this.d.routes.send(this.d.spool, env, pending, message);
    const log = { id, from: env.mailFrom, attempt: state.attempts + 1 };
    const accepted = results.filter((r) => r.status === 'accepted');
    for (const r of accepted) {
      done.add(r.rcpt);
      this.d.log.info({ ...log, rcpt: r.rcpt, via: r.remote ?? 'mailbox' }, `delivered ${id} to <${r.rcpt}> via ${r.remote ?? 'the mailbox folder'}: ${r.text}`);
      this.d.metrics.inc('deliveries_total', { path: 'queue', result: 'delivered' });
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
    this.d.metrics.inc('deliveries_total', { path: 'queue', result: 'deferred' }, left.length);
    if (!this.closed) {
      this.due.set(id, Date.now() + wait);
    }
  }

  /** Gives up on `failed` (a bounce, unless none is wanted); false when the bounce could not be spooled. */
  private async bounce(env: SpoolEnvelope, message: Buffer, failed: RcptResult[], expired: boolean): Promise<boolean> {
    const reason = expired ? `still undeliverable after ${this.d.config.maxAgeHours} hours` : 'refused by the next hop';
    return spoolBounce(this.d, { original: env, message, failures: failed, reason, path: 'queue' }, (id) => this.add(id));
  }

  /**
   * `portcullis queue retry`: makes a message due now, in memory and in its state (so
   * `queue list` and a restart agree). One being delivered right now is left to that
   * attempt, which decides what comes next.
   */
  async retry(id: string): Promise<RetryResult> {
    if (this.running.has(id)) return 'delivering';
    this.admin.add(id);
    try {
      if (!(await this.d.spool.has('spool', id))) return 'unknown';
      if (this.d.config.hold) return 'held';
      const state = await this.readState(id);
      if (state && state.nextAttemptAt > Date.now()) await this.writeState(id, { ...state, nextAttemptAt: Date.now() });
    } finally {
      this.admin.delete(id);
    }
    if (this.closed) return 'due'; // the next start finds it due
    this.due.set(id, 0);
    this.kick();
    return 'due';
  }

  /**
   * `portcullis queue delete`: removes a message for good, with no bounce. An attempt
   * under way is waited for first (it may deliver to the last recipients meanwhile: then
   * nothing is left to delete); none starts while this runs, and the removal is durable
   * (Spool.discard) before this resolves, so the message is never delivered afterwards.
   */
  async delete(id: string): Promise<DeleteResult> {
    this.admin.add(id);
    try {
      const inFlight = this.running.get(id);
      if (inFlight) {
        this.d.log.info({ id }, `delete ${id}: waiting for the delivery attempt under way to end`);
        await inFlight; // never rejects: kick() catches its errors
      }
      this.due.delete(id);
      let envelope: SpoolEnvelope;
      try {
        envelope = (await this.d.spool.read('spool', id)).envelope;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        return { kind: inFlight ? 'delivered' : 'unknown' };
      }
      const done = (await this.readState(id))?.done ?? [];
      if (!(await this.d.spool.discard('spool', id))) return { kind: inFlight ? 'delivered' : 'unknown' };
      await this.removeState(id);
      return { kind: 'deleted', envelope, done };
    } finally {
      this.admin.delete(id);
    }
  }

  private readState(id: string): Promise<RetryState | null> {
    return readRetryState(this.d.dataDir, id);
  }

  private writeState(id: string, s: RetryState): Promise<void> {
    return writeRetryState(this.d.dataDir, id, s);
  }

  private removeState(id: string): Promise<void> {
    return removeRetryState(this.d.dataDir, id);
  }
}
