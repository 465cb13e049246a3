/**
 * A worker process of a cluster: the whole host (SMTP on the listening sockets node:cluster
 * shares, sandboxes, delivery of its own spool), with what the primary holds reached over
 * IPC: the store, the control socket's requests, the admin listener's.
 */
import type { IncomingMessage } from 'node:http';
import { resolve } from 'node:path';
import type { Config, ConfigOverrides } from '../config/config.js';
import type { AdminAnswer, AdminRequest } from '../delivery/admin.js';
import type { Routes } from '../admin/server.js';
import { startHost, type Host } from '../host.js';
import { hostPort } from '../net.js';
import type { StoreBackend } from '../store/ports.js';
import { Peer, type Channel, type PrimaryAsk, type PrimaryTell, type WorkerAsk, type WorkerTell } from './ipc.js';
import { slotDir, spoolDirOf } from '../delivery/slots.js';
import { IpcBackend } from './store.js';

/** The environment variable that gives a forked worker its slot. */
export const SLOT_ENV = 'PORTCULLIS_SLOT';

/**
 * The store backend of a worker. The embedded SQLite file has one writer, the primary,
 * which every worker reaches over IPC; Redis every worker reaches itself (the host opens
 * it from the config, and the primary holds no store).
 */
function workerBackend(config: Config, primary: Peer<WorkerAsk, PrimaryAsk, PrimaryTell>): { backend: StoreBackend | undefined; changed: (t: PrimaryTell) => void } {
  if (config.store.backend !== 'sqlite') return { backend: undefined, changed: () => undefined };
  const b = new IpcBackend(primary);
  return { backend: b, changed: (t) => b.changed(t.changes) };
}

export interface WorkerOptions {
  configFile?: string;
  overrides: ConfigOverrides;
  watch: boolean;
}

/** Starts this worker's host; resolves with it once it serves SMTP (the primary is told). */
export async function runWorker(config: Config, opts: WorkerOptions): Promise<Host> {
  const slot = Number(process.env[SLOT_ENV]);
  if (!Number.isInteger(slot) || slot < 1) throw new Error(`${SLOT_ENV} is not a slot number: ${process.env[SLOT_ENV]}`);
  let control: ((req: AdminRequest) => Promise<AdminAnswer>) | null = null;
  let routes: Routes | null = null;
  let host: Host | null = null;
  let changed: (t: PrimaryTell) => void = () => undefined;
  const primary: Peer<WorkerAsk, PrimaryAsk, PrimaryTell> = new Peer(process as unknown as Channel, async (ask: PrimaryAsk) => {
    switch (ask.t) {
      case 'control':
        if (!control) return { ok: false, again: true, text: 'the host is starting' } satisfies AdminAnswer;
        return control(ask.req);
      case 'admin': {
        const route = routes?.[ask.route as keyof Routes];
        if (!route) throw new Error(`no route ${ask.route}`);
        // The routes read only the URL and the headers.
        return route.handle({ url: ask.url, headers: ask.headers } as unknown as IncomingMessage);
      }
      case 'metrics':
        return host ? host.metrics.samples() : [];
    }
  }, (tell) => changed(tell));
  const store = workerBackend(config, primary);
  changed = store.changed;
  const tell = (m: WorkerTell) => primary.tell(m);
  host = await startHost(config, {
    configFile: opts.configFile, overrides: opts.overrides, watch: opts.watch,
    seat: {
      slot,
      backend: store.backend,
      spoolDir: spoolDirOf(resolve(config.dataDir), slot),
      sharedMailbox: resolve(config.dataDir),
      statusDir: slotDir(resolve(config.dataDir), slot),
      serve: (c, r) => {
        control = c;
        routes = r;
      },
      status: (status) => tell({ t: 'status', status }),
    },
  });
  tell({ t: 'ready', listen: host.addresses.map(hostPort) });
  return host;
}
