/**
 * The primary of a cluster (`portcullis start --processes N`): it serves no SMTP itself.
 * It holds the data dir's lock (the control socket), the SQLite store every worker writes
 * through (store.ts), the admin listener (admin.ts) and status.json, and forks one worker
 * per slot; node:cluster shares the SMTP listening sockets among the workers (on Linux the
 * primary accepts and hands each connection round-robin to a worker).
 *
 * A worker that dies is replaced in its slot, so its spool is delivered by the
 * replacement; its clients' connections drop with it, and a client that did not hear 250
 * tries again later (RFC 5321 §4.5.4.1): a 250 is only ever sent for a message already
 * safe in the spool. A worker that dies soon after it started is replaced after a
 * growing pause, so a crash at start does not spin.
 */
import cluster, { type Worker } from 'node:cluster';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { AdminServer } from '../admin/server.js';
import type { Config } from '../config/config.js';
import { ControlServer, DataDirInUseError, START_WAIT_MS } from '../control.js';
import type { AdminAnswer, AdminRequest } from '../delivery/admin.js';
import { openHostLog } from '../log.js';
import { combineSample } from '../metrics.js';
import { hostPort } from '../net.js';
import type { ReloadStatus } from '../reload.js';
import { sqliteFile } from '../store/open.js';
import { SqliteBackend } from '../store/sqlite.js';
import { clusterRoutes, type WorkerLink } from './admin.js';
import { Peer, WorkerStartError, type Channel, type PrimaryAsk, type WorkerAsk, type WorkerTell } from './ipc.js';
import { adoptOrphanSlots, cleanSharedTmp } from '../delivery/slots.js';
import { storeChanges, StoreHub } from './store.js';
import { SLOT_ENV } from './worker.js';

/** A worker that lived less than this before it died crashed at start: its replacement waits. */
const STABLE_MS = 10_000;
/** The first and the longest pause before replacing a worker that keeps crashing. */
const FIRST_PAUSE_MS = 1_000;
const MAX_PAUSE_MS = 30_000;
/** How often status.json is rewritten with the workers' counters (as a single host does). */
const STATUS_MS = 10_000;

interface Seat {
  slot: number;
  worker: Worker;
  peer: Peer<PrimaryAsk, WorkerAsk, WorkerTell>;
  startedAt: number;
  ready: boolean;
  /** It has loaded its store snapshot: it is told of every change since. */
  loaded: boolean;
  status: ReloadStatus | null;
  /** The pause before the last replacement of this slot (0: none). */
  pause: number;
}

export interface PrimaryOptions {
  processes: number;
}

/** A running primary: `close` stops every worker and lets go of the data dir. */
export interface Primary {
  readonly log: Logger;
  /** SIGHUP: reopens its log; each worker reopens its log and re-reads config and rules. */
  hangup(): void;
  /** SIGUSR1: every process reopens its log file. */
  reopenLog(): void;
  close(): Promise<void>;
}

/**
 * Starts the primary and its workers; resolves once every worker serves SMTP. A worker
 * that fails to start (a config error, a port in use) stops them all, with its exit code.
 */
export async function startPrimary(config: Config, opts: PrimaryOptions): Promise<Primary> {
  const own = openHostLog(config.log);
  const log = own.log;
  const dataDir = resolve(config.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const control = await ControlServer.acquire(dataDir, 'host', START_WAIT_MS, {
    waiting: (h) => log.info({ pid: h.pid }, `waiting for the portcullis command (pid ${h.pid}) working on the data dir`),
    stale: (path) => log.warn({ dataDir }, `took over the data dir: the process that held it is gone (removed its stale ${path})`),
  });
  if (!(control instanceof ControlServer)) throw new DataDirInUseError(dataDir, control);
  const seats = new Map<number, Seat>();
  let stopping = false;
  let admin: AdminServer | null = null;
  let hub: StoreHub | null = null;
  const startedAt = new Date().toISOString();
  try {
    const moved = await adoptOrphanSlots(dataDir, opts.processes);
    if (moved) log.info({ moved }, `moved ${moved} messages from the spools of slots beyond ${opts.processes} into slot 1's`);
    await cleanSharedTmp(dataDir);
    // The embedded SQLite file has one writer, this process; with Redis each worker opens the store itself.
    hub = config.store.backend === 'sqlite'
      ? new StoreHub(await SqliteBackend.open(sqliteFile(dataDir)), (changes, except) => {
        for (const s of seats.values()) if (s.slot !== except && s.loaded) s.peer.tell(storeChanges(changes));
      })
      : null;
    const store = hub;
    const live = (): WorkerLink[] => [...seats.values()].filter((s) => s.ready).map((s) => ({ slot: s.slot, pid: s.worker.process.pid!, ask: (a) => s.peer.ask(a) }));

    let statusWrite = Promise.resolve();
    const writeStatus = () => {
      statusWrite = statusWrite.then(() => {
        const st = combinedStatus([...seats.values()], startedAt, admin ? hostPort(admin.address) : null);
        if (!st) return;
        const file = join(dataDir, 'status.json');
        try {
          writeFileSync(`${file}.tmp`, JSON.stringify(st, null, 2) + '\n');
          renameSync(`${file}.tmp`, file);
        } catch (e) {
          log.warn({ err: e }, `could not write status.json: ${(e as Error).message}`);
        }
      });
      return statusWrite;
    };

    let failedStart: ((e: Error) => void) | null = null;
    let allReady: (() => void) | null = null;
    let listening: string[] = [];
    const fork = (slot: number, pause: number): Seat => {
      const worker = cluster.fork({ [SLOT_ENV]: String(slot) });
      const seat: Seat = { slot, worker, startedAt: Date.now(), ready: false, loaded: false, status: null, pause, peer: undefined! };
      seat.peer = new Peer<PrimaryAsk, WorkerAsk, WorkerTell>(worker as unknown as Channel, async (ask) => {
        switch (ask.t) {
          case 'store-load': {
            if (!store) throw new Error('this cluster has no store in its primary (store.backend is not sqlite)');
            const snapshot = await store.load(ask.now);
            // From now on it hears of every batch written after its snapshot.
            seat.loaded = true;
            return snapshot;
          }
          case 'store-write':
            if (!store) throw new Error('this cluster has no store in its primary (store.backend is not sqlite)');
            await store.writeFrom(slot, ask.batch);
            return null;
        }
      }, (tell) => {
        switch (tell.t) {
          case 'ready':
            seat.ready = true;
            listening = tell.listen;
            if ([...seats.values()].every((x) => x.ready)) allReady?.();
            if (pause >= 0) log.info({ slot, pid: worker.process.pid }, `worker ${slot} (pid ${worker.process.pid}) serves again on ${tell.listen.join(', ')}`);
            break;
          case 'status':
            seat.status = tell.status;
            void writeStatus();
            break;
        }
      });
      worker.on('error', (e) => log.warn({ slot, err: e }, `worker ${slot}: ${e.message}`));
      worker.on('exit', (code, signal) => {
        seat.ready = false;
        seat.loaded = false;
        seat.peer.fail(new Error(`worker ${slot} is gone`));
        if (seats.get(slot) !== seat) return;
        const how = signal ? `killed by ${signal}` : `exited with ${code}`;
        if (stopping) return;
        if (failedStart) return failedStart(new WorkerStartError(slot, code, `(pid ${worker.process.pid}) ${how}`));
        const lived = Date.now() - seat.startedAt;
        const next = lived >= STABLE_MS ? 0 : Math.min(MAX_PAUSE_MS, Math.max(FIRST_PAUSE_MS, seat.pause * 2));
        log.error({ slot, pid: worker.process.pid, code, signal, livedMs: lived }, `worker ${slot} (pid ${worker.process.pid}) ${how}: its clients' connections dropped (no 250 was given for a message not in its spool); replacing it${next ? ` in ${next / 1000} s` : ''}`);
        const timer = setTimeout(() => {
          if (!stopping) seats.set(slot, fork(slot, next));
        }, next);
        timer.unref();
      });
      return seat;
    };

    // Every worker starts from this same command line; the slot tells it which it is.
    cluster.setupPrimary({ exec: process.argv[1], args: process.argv.slice(2) });
    await new Promise<void>((ok, fail) => {
      failedStart = fail;
      allReady = ok;
      for (let slot = 1; slot <= opts.processes; slot++) seats.set(slot, fork(slot, -1));
    });
    failedStart = null;
    allReady = null;

    control.serve((req) => askControl(live(), req));
    if (config.admin.listen !== null) admin = await AdminServer.start({ listen: config.admin.listen, token: config.admin.token, routes: clusterRoutes(live), log });
    await writeStatus();
    const statusTimer = setInterval(() => void writeStatus(), STATUS_MS);
    statusTimer.unref();
    const pids = [...seats.values()].map((s) => s.worker.process.pid);
    log.info({ listen: listening, processes: opts.processes, pids, dataDir }, `Portcullis listening on ${listening.join(', ')} with ${opts.processes} processes (pids ${pids.join(', ')})`);
    if (admin) log.info({ admin: hostPort(admin.address) }, `metrics at http://${hostPort(admin.address)}/metrics`);

    const signal = (sig: NodeJS.Signals) => {
      for (const s of seats.values()) if (!s.worker.isDead()) s.worker.process.kill(sig);
    };
    return {
      log,
      hangup: () => {
        own.reopen();
        signal('SIGHUP');
      },
      reopenLog: () => {
        own.reopen();
        signal('SIGUSR1');
      },
      close: async () => {
        stopping = true;
        clearInterval(statusTimer);
        control.stop();
        await admin?.close();
        await stopWorkers([...seats.values()]);
        await writeStatus();
        await control.drain();
        await store?.close();
        await control.close();
        own.flush();
      },
    };
  } catch (e) {
    // A worker that did not start, the admin port taken: the started workers stop too.
    stopping = true;
    await admin?.close().catch(() => undefined);
    await stopWorkers([...seats.values()]);
    await hub?.close().catch(() => undefined);
    await control.close();
    own.flush();
    throw e;
  }
}

/** SIGTERM to each worker (it closes its sessions and its spool, as a single host does); resolves once all have exited. */
async function stopWorkers(seats: Seat[]): Promise<void> {
  await Promise.all(seats.map((s) => new Promise<void>((ok) => {
    if (s.worker.isDead()) return ok();
    s.worker.once('exit', () => ok());
    s.worker.process.kill('SIGTERM');
  })));
}

/**
 * A control-socket request (`portcullis queue retry|delete`, `quarantine release|delete`),
 * carried out by the worker whose spool holds the message: every worker is asked, the
 * one that did it answers (retry --all: each says what it did).
 */
async function askControl(workers: WorkerLink[], req: AdminRequest): Promise<AdminAnswer> {
  if (!workers.length) return { ok: false, again: true, text: 'no worker process is serving right now' };
  const answers = await Promise.all(workers.map((w) => w.ask({ t: 'control', req }).catch((e: Error): AdminAnswer => ({ ok: false, text: e.message }))));
  if (req.op === 'queue-retry-all') return { ok: answers.some((a) => a.ok), text: answers.map((a) => a.text).join('\n') };
  return answers.find((a) => a.ok) ?? answers.find((a) => a.again) ?? answers[0]!;
}

/**
 * The data dir's status.json for a cluster: the reload state of the worker that has
 * reloaded least (so `portcullis reload`, which waits for it to change, returns once every
 * worker has reloaded), the counters summed over the workers, and each worker's line.
 */
function combinedStatus(seats: Seat[], startedAt: string, admin: string | null): ReloadStatus | null {
  const known = seats.filter((s): s is Seat & { status: ReloadStatus } => s.status !== null).sort((a, b) => a.slot - b.slot);
  if (!known.length) return null;
  const done = (s: ReloadStatus) => s.reloads.ok + s.reloads.failed;
  const laggard = known.reduce((a, b) => (done(b.status) < done(a.status) ? b : a)).status;
  const each = new Map<string, number[]>();
  for (const s of known) for (const [k, v] of Object.entries(s.status.counters ?? {})) each.set(k, [...(each.get(k) ?? []), v]);
  const counters = Object.fromEntries([...each].map(([k, vs]) => [k, combineSample(k, vs)]));
  return {
    ...laggard,
    pid: process.pid, startedAt, admin, counters, savedAt: new Date().toISOString(),
    workers: known.map((s) => ({ slot: s.slot, pid: s.status.pid, startedAt: s.status.startedAt, version: s.status.version, reloads: s.status.reloads })),
  };
}

