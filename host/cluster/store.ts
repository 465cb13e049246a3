/**
 * The store shared by the processes of a cluster, with the embedded SQLite file as its
 * source of truth: only the primary opens the file (one writer, no lock contention between
 * processes), and each worker's in-memory front (store.ts) talks to it through an
 * `IpcBackend`. The primary's `StoreHub` writes each worker's batch to SQLite, then hands
 * it to every other worker's front, as any `StoreBackend.subscribe` reports changes made
 * elsewhere. A backend every process can reach itself (Redis) needs no hub: the worker
 * opens that instead (worker.ts, `workerBackend`).
 */
import type { Snapshot, StoreBackend, StoreChange } from '../store/ports.js';
import type { Peer, PrimaryAsk, PrimaryTell, WorkerAsk } from './ipc.js';

/** A worker's backend: the primary's store, over IPC. */
export class IpcBackend implements StoreBackend {
  private readonly listeners = new Set<(changes: StoreChange[]) => void>();

  constructor(private readonly primary: Peer<WorkerAsk, PrimaryAsk, PrimaryTell>) {}

  /** What the primary tells: changes the other processes made. */
  changed(changes: StoreChange[]): void {
    for (const l of this.listeners) l(changes);
  }

  load(now: number): Promise<Snapshot> {
    return this.primary.ask({ t: 'store-load', now });
  }

  async write(batch: StoreChange[]): Promise<void> {
    await this.primary.ask({ t: 'store-write', batch });
  }

  subscribe(onChange: (changes: StoreChange[]) => void): () => void {
    this.listeners.add(onChange);
    return () => this.listeners.delete(onChange);
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }
}

/** Tells every worker but `except` (a slot) of `changes`. */
export type Broadcast = (changes: StoreChange[], except: number) => void;

/**
 * The primary's end: SQLite underneath, the one writer of the file. Each worker's batch
 * is written, then passed on to the other workers (the primary itself keeps no store in
 * memory: the admin API's blacklist changes are made by the workers).
 */
export class StoreHub {
  /** Loads and batches go to the file one at a time, as one front's would (SQLite: one transaction at a time on its connection). */
  private writing: Promise<unknown> = Promise.resolve();

  constructor(private readonly file: StoreBackend, private readonly broadcast: Broadcast) {}

  load(now: number): Promise<Snapshot> {
    return this.inTurn(() => this.file.load(now));
  }

  /** A worker's batch (`from`: its slot): written, then told to the other workers. */
  async writeFrom(from: number, batch: StoreChange[]): Promise<void> {
    await this.inTurn(() => this.file.write(batch));
    this.broadcast(batch, from);
  }

  private inTurn<T>(op: () => Promise<T>): Promise<T> {
    const w = this.writing.then(op);
    this.writing = w.catch(() => undefined);
    return w;
  }

  async close(): Promise<void> {
    await this.writing;
    await this.file.close();
  }
}

/** The tell a worker gets for `changes`. */
export const storeChanges = (changes: StoreChange[]): PrimaryTell => ({ t: 'store-changes', changes });
