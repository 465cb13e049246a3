/**
 * The administrator's changes to the queue and the quarantine: `portcullis queue
 * retry|delete` and `portcullis quarantine release|delete`. They are carried out by the
 * one process that holds the data dir's control socket (host/control.ts): the running
 * host, whose queue knows which delivery is under way, or, when no host runs, the command
 * itself. The same code and the same answers either way, one request at a time (a retry
 * and a delete of one message never interleave).
 *
 * Postfix's postsuper works on queue files behind the queue manager's back and relies on
 * it noticing; here the queue does the work itself, so a delete that races a delivery
 * either waits for it or wins, and never leaves a message that is delivered afterwards.
 */
import type { Logger } from 'pino';
import type { Spool, SpoolEnvelope } from '../spool/spool.js';
import type { Queue } from './queue.js';
import { readRetryState, removeRetryState, writeRetryState } from './retry-state.js';

export type AdminRequest =
  | { op: 'queue-retry'; id: string }
  | { op: 'queue-retry-all' }
  | { op: 'queue-delete'; id: string }
  | { op: 'quarantine-release'; id: string }
  | { op: 'quarantine-delete'; id: string };

/**
 * `ok` false: not done, and the command exits 1 (no such message, the queue is on hold).
 * `again`: not done for now (the host is starting or stopping): ask again in a moment.
 */
export interface AdminAnswer {
  ok: boolean;
  text: string;
  again?: boolean;
}

/** A message id as newMessageId makes them: nothing else may become a file name. */
export const MESSAGE_ID = /^[0-9A-Z]{1,40}$/;

/** Which requests name a message. */
const NEEDS_ID: Record<AdminRequest['op'], boolean> = {
  'queue-retry': true,
  'queue-retry-all': false,
  'queue-delete': true,
  'quarantine-release': true,
  'quarantine-delete': true,
};

/** A request off the control socket, checked: null for anything else. */
export function parseRequest(x: unknown): AdminRequest | null {
  if (typeof x !== 'object' || x === null) return null;
  const { op, id } = x as { op?: unknown; id?: unknown };
  if (typeof op !== 'string' || !Object.hasOwn(NEEDS_ID, op)) return null;
  const o = op as AdminRequest['op'];
  if (!NEEDS_ID[o]) return { op: o } as AdminRequest;
  return typeof id === 'string' && MESSAGE_ID.test(id) ? ({ op: o, id } as AdminRequest) : null;
}

/** `<a@example.org>`; the null sender as `<>`. */
export const angle = (address: string): string => `<${address}>`;
const angles = (addresses: string[]): string => addresses.map(angle).join(', ');
const messages = (n: number): string => `${n} message${n === 1 ? '' : 's'}`;

export interface AdminDeps {
  spool: Spool;
  dataDir: string;
  /** The running host's queue; null when the command acts itself (no host running). */
  queue: Queue | null;
  /** delivery.queue.hold: nothing is delivered. */
  hold: boolean;
  /** The host's log (a command prints its answer instead). */
  log: Logger | null;
}

export class MailAdmin {
  private last: Promise<unknown> = Promise.resolve();

  constructor(private readonly d: AdminDeps) {}

  /** Carries out `req` once the requests before it are done. */
  handle(req: AdminRequest): Promise<AdminAnswer> {
    const run = this.last.then(() => this.run(req));
    this.last = run.catch(() => undefined);
    return run;
  }

  private async run(req: AdminRequest): Promise<AdminAnswer> {
    switch (req.op) {
      case 'queue-retry':
        return this.retry(req.id);
      case 'queue-retry-all':
        return this.retryAll();
      case 'queue-delete':
        return this.deleteQueued(req.id);
      case 'quarantine-release':
        return this.release(req.id);
      case 'quarantine-delete':
        return this.deleteQuarantined(req.id);
    }
  }

  private done(text: string, fields: Record<string, unknown>): AdminAnswer {
    this.d.log?.info({ ...fields, by: 'administrator' }, text);
    return { ok: true, text };
  }

  private async retry(id: string): Promise<AdminAnswer> {
    const q = this.d.queue;
    const r = q ? await q.retry(id) : await this.retryOffline(id);
    switch (r) {
      case 'unknown':
        return { ok: false, text: `no message ${id} in the queue` };
      case 'held':
        return { ok: false, text: `the queue is on hold (delivery.queue.hold): ${id} stays in the spool` };
      case 'delivering':
        return { ok: true, text: `${id} is being delivered right now` };
      case 'due':
        return this.done(q ? `retrying ${id} now` : `${id} is due now: the host delivers it when it starts`, { id });
    }
  }

  private async retryAll(): Promise<AdminAnswer> {
    const ids = await this.d.spool.list('spool');
    if (ids.length && this.d.hold) return { ok: false, text: `the queue is on hold (delivery.queue.hold): ${messages(ids.length)} stay in the spool` };
    const q = this.d.queue;
    let due = 0;
    let delivering = 0;
    for (const id of ids) {
      const r = q ? await q.retry(id) : await this.retryOffline(id);
      if (r === 'due') due++;
      else if (r === 'delivering') delivering++;
    }
    const now = delivering ? ` (${delivering} being delivered right now)` : '';
    return this.done(q ? `retrying ${messages(due)} now${now}` : `${messages(due)} due now: the host delivers them when it starts`, { messages: due });
  }

  /** With no host running: the message's state says it is due, so the next start tries it at once. */
  private async retryOffline(id: string): Promise<'due' | 'held' | 'unknown'> {
    if (!(await this.d.spool.has('spool', id))) return 'unknown';
    if (this.d.hold) return 'held';
    const state = await readRetryState(this.d.dataDir, id);
    if (state && state.nextAttemptAt > Date.now()) await writeRetryState(this.d.dataDir, id, { ...state, nextAttemptAt: Date.now() });
    return 'due';
  }

  private async deleteQueued(id: string): Promise<AdminAnswer> {
    const r = this.d.queue ? await this.d.queue.delete(id) : await this.deleteOffline(id);
    if (r.kind === 'unknown') return { ok: false, text: `no message ${id} in the queue` };
    if (r.kind === 'delivered') return { ok: false, text: `${id} was delivered while the delete waited for its delivery attempt to end` };
    const { envelope: env, done } = r;
    const left = env.rcptTo.filter((a) => !done.includes(a));
    const had = done.length ? `; ${angles(done)} had it already` : '';
    return this.done(`deleted ${id} from the queue (from ${angle(env.mailFrom)} to ${angles(left)}: not delivered, no bounce${had})`, { id, from: env.mailFrom, rcpts: left });
  }

  private async deleteOffline(id: string): Promise<{ kind: 'deleted'; envelope: SpoolEnvelope; done: string[] } | { kind: 'unknown' }> {
    if (!(await this.d.spool.has('spool', id))) return { kind: 'unknown' };
    const { envelope } = await this.d.spool.read('spool', id);
    const done = (await readRetryState(this.d.dataDir, id))?.done ?? [];
    if (!(await this.d.spool.discard('spool', id))) return { kind: 'unknown' };
    await removeRetryState(this.d.dataDir, id);
    return { kind: 'deleted', envelope, done };
  }

  private async release(id: string): Promise<AdminAnswer> {
    const env = await this.quarantined(id);
    if (!env) return { ok: false, text: `no message ${id} in quarantine` };
    if (!(await this.d.spool.release(id))) return { ok: false, text: `no message ${id} in quarantine` };
    this.d.queue?.add(id);
    const why = env.disposition ? ` (rule ${env.disposition.rule ?? '?'}: ${env.disposition.reason ?? 'no reason given'})` : '';
    const after = this.d.hold ? '; the queue is on hold (delivery.queue.hold)' : this.d.queue ? '' : '; the host delivers it when it starts';
    return this.done(`released ${id} from quarantine${why}: queued for ${angles(env.rcptTo)}${after}`, { id, from: env.mailFrom, rcpts: env.rcptTo });
  }

  private async deleteQuarantined(id: string): Promise<AdminAnswer> {
    const env = await this.quarantined(id);
    if (!env || !(await this.d.spool.discard('quarantine', id))) return { ok: false, text: `no message ${id} in quarantine` };
    return this.done(`deleted ${id} from quarantine (from ${angle(env.mailFrom)} to ${angles(env.rcptTo)})`, { id, from: env.mailFrom, rcpts: env.rcptTo });
  }

  /** The envelope of a quarantined message; null when there is none by that id. */
  private async quarantined(id: string): Promise<SpoolEnvelope | null> {
    try {
      return (await this.d.spool.read('quarantine', id)).envelope;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  }
}
