/**
 * Delivery: what happens to a message the rules accepted. The SMTP adapter calls `accept`
 * with the transaction and words the outcome as the client's reply; the outcome says the
 * message is safe only once it is:
 *
 *   discard     → discarded, nothing kept
 *   quarantine  → quarantine/new/ (with rule and reason), never relayed
 *   spool mode  → spool/new/ (fsync'ed file and directory), then the queue delivers it
 *   relay mode  → the next hop's verdict (see relay.ts)
 *
 * Delivery builds what it stores and sends: the id, the spool envelope (redirect replaces
 * the recipients; DSN parameters kept) and the header lines in front of the message.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/config.js';
import type { Metrics } from '../metrics.js';
import { newMessageId, type Spool } from '../spool/spool.js';
import type { DeliveryOutcome } from './outcome.js';
import { Queue } from './queue.js';
import { relay, type RelayDeps } from './relay.js';
import { Routes } from './routes.js';
import { addedHeaders, envelopeOf, type AcceptedTransaction } from './transaction.js';

export interface DeliveryDeps {
  config: Config;
  spool: Spool;
  dataDir: string;
  log: Logger;
  metrics: Metrics;
}

export class Delivery {
  private readonly routes: Routes;
  private readonly relayDeps: RelayDeps;
  readonly queue: Queue;
  /** The live config: `hostname` and `received` (our Received header) follow a reload. */
  private config: Config;

  constructor(private readonly d: DeliveryDeps) {
    const c = (this.config = d.config);
    this.routes = new Routes(c.delivery, c.hostname);
    this.queue = new Queue({ spool: d.spool, routes: this.routes, config: c.delivery.queue, hostname: c.hostname, dataDir: d.dataDir, log: d.log, metrics: d.metrics });
    this.relayDeps = { routes: this.routes, spool: d.spool, hostname: c.hostname, log: d.log, metrics: d.metrics, enqueue: (id) => this.queue.add(id) };
  }

  /**
   * Applies a reloaded config to the messages accepted from now on. `delivery` (mode, next
   * hops, queue) takes a restart: the reloader hands it back unchanged.
   */
  configure(c: Config): void {
    this.config = c;
  }

  /** Starts the queue on what the spool holds (left by a previous run or a crash). */
  async start(): Promise<void> {
    const partial = await this.d.spool.cleanTmp();
    if (partial) this.d.log.info({ files: partial }, `removed ${partial} partly written file(s) left by a crash`);
    const restored = await this.d.spool.recover();
    if (restored) this.d.log.warn({ messages: restored }, `restored ${restored} accepted message(s) from the spool journal after a crash`);
    await this.queue.start();
  }

  async close(): Promise<void> {
    await this.queue.close(() => this.routes.close());
  }

  async accept(t: AcceptedTransaction): Promise<DeliveryOutcome> {
    const c = this.config;
    const id = newMessageId();
    const now = new Date();
    const env = envelopeOf(t, id, now);
    const parts = [Buffer.from(addedHeaders(t, id, c.received ? c.hostname : null, now)), t.message];
    const log = { session: t.sessionId, id, ip: t.client.ip, from: t.mailFrom.address, rcpts: t.rcptTo.length, size: t.message.length };
    const { action, rule } = t.disposition;
    if (action === 'discard') {
      this.d.log.info({ ...log, rule, reason: t.disposition.reason }, `discarded message ${id} (rule ${rule})`);
      this.d.metrics.inc('messages_total', { disposition: 'discard' });
      return { kind: 'discarded', id };
    }
    if (action !== 'quarantine' && c.delivery.mode === 'relay') {
      const outcome = await relay(this.relayDeps, env, Buffer.concat(parts), log);
      if (outcome.kind === 'relayed' || outcome.kind === 'relayed-in-part') this.d.metrics.inc('messages_total', { disposition: action });
      return outcome;
    }
    const area = action === 'quarantine' ? 'quarantine' : 'spool';
    try {
      await this.d.spool.store(area, env, parts);
    } catch (e) {
      this.d.log.error({ ...log, err: e }, `could not spool message ${id}: ${(e as Error).message}`);
      this.d.metrics.inc('spool_failures_total');
      return { kind: 'spool-full' };
    }
    this.d.log.info({ ...log, disposition: action, rule }, `${area === 'quarantine' ? 'quarantined' : 'queued'} message ${id}`);
    this.d.metrics.inc('messages_total', { disposition: action });
    if (area === 'quarantine') return { kind: 'quarantined', id };
    this.queue.add(id);
    return { kind: 'queued', id };
  }
}
