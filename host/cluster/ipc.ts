/**
 * The messages between the cluster's primary and its worker processes (node:cluster's IPC
 * channel, JSON), and one request/answer helper both sides use. Each kind of message is
 * listed here once, so a side that sends a shape the other does not handle does not compile.
 */
import type { AdminAnswer, AdminRequest } from '../delivery/admin.js';
import type { ReloadStatus } from '../reload.js';
import type { Snapshot, StoreChange } from '../store/ports.js';
import type { AdminResponse } from '../admin/server.js';

/** What a worker asks of the primary (answered by an `answer` with the same id). */
export type WorkerAsk =
  | { t: 'store-load'; now: number }
  | { t: 'store-write'; batch: StoreChange[] };

/** What the primary asks of a worker. */
export type PrimaryAsk =
  /** A control-socket request (`portcullis queue …`): carried out by the worker that holds the message. */
  | { t: 'control'; req: AdminRequest }
  /** An admin API request, answered by the worker's own routes (admin/routes.ts). */
  | { t: 'admin'; route: string; url: string; headers: Record<string, string> }
  /** Its metrics as prom-client JSON, for the primary to sum (GET /metrics). */
  | { t: 'metrics' };

/** What each ask is answered with. */
export interface Answers {
  'store-load': Snapshot;
  'store-write': null;
  control: AdminAnswer;
  admin: AdminResponse;
  metrics: unknown[];
}

/** Told without waiting for an answer. */
export type WorkerTell =
  /** Its host started: it serves SMTP now. */
  | { t: 'ready'; listen: string[] }
  /** Its status (reload state, counters) changed: what status.json combines. */
  | { t: 'status'; status: ReloadStatus };
export type PrimaryTell =
  /** Changes another process made to the store (ports.ts `subscribe`). */
  { t: 'store-changes'; changes: StoreChange[] };

type AnswerMessage = { t: 'answer'; id: number; ok: true; value: unknown } | { t: 'answer'; id: number; ok: false; error: string };
type Envelope<A> = (A & { id: number }) | AnswerMessage;

/** A worker process that exited before it served: it said why on stderr; the primary exits with its code. */
export class WorkerStartError extends Error {
  constructor(readonly slot: number, readonly exitCode: number | null, how: string) {
    super(`worker ${slot} ${how} while starting; every worker stopped`);
  }
}

/** An IPC end: a worker's `process`, or the primary's handle of a worker. */
export interface Channel {
  /** With a callback, a channel that closed reports to it instead of emitting 'error' (which would throw). */
  send(message: unknown, callback: (err: Error | null) => void): unknown;
  on(event: 'message', listener: (message: unknown) => void): unknown;
}

/** How long an ask may wait for its answer: a worker that hangs must not hang the admin. */
const ASK_MS = 15_000;

/**
 * One side of the channel: `ask` sends a request and resolves with its answer; `handle`
 * answers the other side's requests; `tells` receives what needs no answer. A channel that
 * closes (a worker died) fails what is still waiting, through `fail`.
 */
export class Peer<Out extends { t: string }, In extends { t: string }, TellIn extends { t: string }> {
  private next = 1;
  private readonly waiting = new Map<number, { ok: (v: unknown) => void; fail: (e: Error) => void; timer: NodeJS.Timeout }>();

  constructor(
    private readonly channel: Channel,
    handle: (ask: In) => Promise<unknown>,
    tells: (tell: TellIn) => void,
  ) {
    channel.on('message', (raw) => {
      const m = raw as Envelope<In> | TellIn;
      if (typeof m !== 'object' || m === null || typeof m.t !== 'string') return;
      if (m.t === 'answer') return this.answered(m as unknown as AnswerMessage);
      if (typeof (m as { id?: unknown }).id !== 'number') return tells(m as TellIn);
      const { id } = m as { id: number };
      handle(m as In).then(
        (value) => this.post({ t: 'answer', id, ok: true, value: value ?? null }),
        (e: unknown) => this.post({ t: 'answer', id, ok: false, error: (e as Error).message }),
      );
    });
  }

  ask<A extends Out & { t: keyof Answers }>(a: A): Promise<Answers[A['t']]> {
    const id = this.next++;
    return new Promise((ok, fail) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        fail(new Error(`no answer to ${a.t} within ${ASK_MS / 1000} s`));
      }, ASK_MS);
      this.waiting.set(id, { ok: ok as (v: unknown) => void, fail, timer });
      if (!this.post({ ...a, id })) this.fail(new Error('the other process is gone'), id);
    });
  }

  tell(m: unknown): void {
    this.post(m);
  }

  /** Fails every ask still waiting (or only `id`): the other process is gone. */
  fail(e: Error, id?: number): void {
    for (const [k, w] of this.waiting) {
      if (id !== undefined && k !== id) continue;
      clearTimeout(w.timer);
      this.waiting.delete(k);
      w.fail(e);
    }
  }

  private answered(m: AnswerMessage): void {
    const w = this.waiting.get(m.id);
    if (!w) return;
    clearTimeout(w.timer);
    this.waiting.delete(m.id);
    if (m.ok) w.ok(m.value);
    else w.fail(new Error(m.error));
  }

  private post(m: unknown): boolean {
    try {
      // A message to a process that just died is lost: its asks fail through `fail`.
      this.channel.send(m, () => undefined);
      return true;
    } catch {
      return false;
    }
  }
}
