/**
 * Delivery: what happens to a message the rules accepted, and the reply the client gets.
 * The SMTP adapter calls `accept` only; it answers 250 only once the message is safe:
 *
 *   discard     → 250, nothing kept
 *   quarantine  → quarantine/new/ (with rule and reason), never relayed
 *   spool mode  → spool/new/ (fsync'ed file and directory), then the queue delivers it
 *   relay mode  → the next hop's verdict (see relay.ts)
 *
 * Redirect has already replaced the envelope's recipients when the message gets here.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/config.js';
import type { Counters } from '../metrics.js';
import { REPLIES, type Reply } from '../smtp/reply.js';
import type { Spool, SpoolEnvelope } from '../spool/spool.js';
import { Queue } from './queue.js';
import { relay, type RelayDeps } from './relay.js';
import { Routes } from './routes.js';

export interface AcceptedMessage {
  /** Envelope as spooled: id, client, sender, (redirected) recipients, disposition. */
  env: SpoolEnvelope;
  /** The added header lines, then the message exactly as received. */
  parts: Buffer[];
  sessionId: string;
  /** Fields every log line about this message carries. */
  log: Record<string, unknown>;
}

export interface DeliveryDeps {
  config: Config;
  spool: Spool;
  dataDir: string;
  log: Logger;
  counters: Counters;
}

export class Delivery {
  private readonly routes: Routes;
  private readonly relayDeps: RelayDeps;
  readonly queue: Queue;

  constructor(private readonly d: DeliveryDeps) {
    const c = d.config;
    this.routes = new Routes(c.delivery, c.hostname);
    this.queue = new Queue({ spool: d.spool, routes: this.routes, config: c.delivery.queue, hostname: c.hostname, dataDir: d.dataDir, log: d.log, counters: d.counters });
    this.relayDeps = { routes: this.routes, spool: d.spool, hostname: c.hostname, log: d.log, counters: d.counters, enqueue: (id) => this.queue.add(id) };
  }

  /** Starts the queue on what the spool holds (left by a previous run or a crash). */
  async start(): Promise<void> {
    const partial = await this.d.spool.cleanTmp();
    if (partial) this.d.log.info({ files: partial }, `removed ${partial} partly written file(s) left by a crash`);
    await this.queue.start();
  }

  async close(): Promise<void> {
    await this.queue.close(() => this.routes.close());
  }

  async accept(m: AcceptedMessage): Promise<Reply> {
    const { env, log } = m;
    const action = env.disposition?.action ?? 'deliver';
    const rule = env.disposition?.rule ?? null;
    if (action === 'discard') {
      this.d.log.info({ ...log, rule, reason: env.disposition?.reason }, `discarded message ${env.id} (rule ${rule})`);
      this.d.counters.inc('messages_total', { disposition: 'discard' });
      return REPLIES.queued(env.id);
    }
    if (action !== 'quarantine' && this.d.config.delivery.mode === 'relay') {
      const reply = await relay(this.relayDeps, env, Buffer.concat(m.parts), m.sessionId, log);
      if (reply.code === 250) this.d.counters.inc('messages_total', { disposition: action });
      return reply;
    }
    const area = action === 'quarantine' ? 'quarantine' : 'spool';
    try {
      await this.d.spool.store(area, env, m.parts);
    } catch (e) {
      this.d.log.error({ ...log, err: e }, `could not spool message ${env.id}: ${(e as Error).message}`);
      this.d.counters.inc('spool_failures_total');
      return REPLIES.spoolFailure(m.sessionId);
    }
    this.d.log.info({ ...log, disposition: action, rule }, `${area === 'quarantine' ? 'quarantined' : 'queued'} message ${env.id}`);
    this.d.counters.inc('messages_total', { disposition: action });
    if (area === 'spool') this.queue.add(env.id);
    return REPLIES.queued(env.id);
  }
}
