/**
 * Puts the parts together: config → sandbox pool → RuleSet → SMTP front door listening.
 * Also what tests and the CLI use to start and stop a host.
 */
import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import { adminRoutes } from './admin/routes.js';
import { AdminServer, type Routes } from './admin/server.js';
import { parseListen, type Config, type ConfigOverrides } from './config/config.js';
import { ControlServer, DataDirInUseError, START_WAIT_MS } from './control.js';
import { MailAdmin, type AdminAnswer, type AdminRequest } from './delivery/admin.js';
import { isHostNeed, needName } from './dns/facts.js';
import { Delivery } from './delivery/delivery.js';
import { openHostLog } from './log.js';
import { Metrics } from './metrics.js';
import { hostPort } from './net.js';
import { TrafficStats } from './smtp/traffic.js';
import { Pipeline } from './pipeline/pipeline.js';
import { loadRuleSet, offReason, RuleCache, type RuleSet } from './pipeline/ruleset.js';
import { Recorder } from './record/recorder.js';
import { Reloader, type ReloadStatus } from './reload.js';
import { Sandbox } from './sandbox/sandbox.js';
import { FrontDoor } from './smtp/server.js';
import { Spool } from './spool/spool.js';
import { adoptOrphanSlots } from './delivery/slots.js';
import { storeAccess } from './store/access.js';
import { openStore } from './store/open.js';
import { applyMailboxConfig, type MemoryStore } from './store/store.js';
import type { StoreBackend } from './store/ports.js';

export interface HostOptions {
  /** Where logs go (default: pino to stdout at config.log.level). */
  logger?: Logger;
  /** The file `config` came from, re-read on reload, and the command-line overrides to apply again. */
  configFile?: string;
  overrides?: ConfigOverrides;
  /** Watch the rules directories and the config file for changes (default false). */
  watch?: boolean;
  /** Set in a worker process of a cluster (host/cluster/): what its primary holds instead of it. */
  seat?: WorkerSeat;
}

/**
 * A worker process's place in a cluster (`portcullis start --processes N`): the primary
 * holds the data dir's lock, status.json and the admin listener, and hands each worker
 * its store backend and its own spool directory; the worker serves SMTP and delivers
 * its own spool.
 */
export interface WorkerSeat {
  /** Its slot, 1…N: names its spool directory and its session record files. */
  slot: number;
  /** The store through the primary (the embedded SQLite file has one writer); absent, the worker opens `config.store` itself (Redis, which every process reaches). */
  backend?: StoreBackend;
  /** Its own spool (spool, quarantine, retry state): no other process reads or cleans it. */
  spoolDir: string;
  /** The mailbox folder every worker delivers local mail into (the data dir's). */
  sharedMailbox: string;
  /** Where its own status.json goes (the primary combines them into the data dir's). */
  statusDir: string;
  /** Serves the primary's requests on behalf of the control socket and the admin listener. */
  serve(control: (req: AdminRequest) => Promise<AdminAnswer>, admin: Routes): void;
  /** Each status written (start, reload, every 10 s). */
  status(s: ReloadStatus): void;
}

export interface Host {
  readonly config: Config;
  readonly log: Logger;
  /** Every metric (host/metrics.ts); it outlives reloads. */
  readonly metrics: Metrics;
  /** Per-minute and hourly traffic, and per recipient domain per day (the admin API's STAT WINDOW, STAT HOURLY, routes). */
  readonly stats: TrafficStats;
  /** The watchlist store (blacklist, counters, mailboxes, lists): in memory, written behind to its backend (config store: SQLite under the data dir, or a shared Redis). */
  readonly store: MemoryStore;
  readonly sandbox: Sandbox;
  /** Listening addresses, with the real port when the config asked for port 0. */
  readonly addresses: { host: string; port: number }[];
  /** Where the admin listener (/metrics) listens, with the real port; null when config admin.listen is null. */
  readonly adminAddress: { host: string; port: number } | null;
  /** The RuleSet new sessions get. */
  current(): RuleSet;
  /** Live sessions per RuleSet version. */
  pins(): Map<number, number>;
  /** Reopens the log file, after logrotate moved it (SIGUSR1; SIGHUP does it too). */
  reopenLog(): void;
  /** Re-reads the config and rules now (what SIGHUP and a file change do). */
  reload(reason: string): Promise<void>;
  /** Version, reload counts, last error: also written to <dataDir>/status.json. */
  status(): ReloadStatus;
  close(): Promise<void>;
}

/** Pin counts per RuleSet: a version's sandboxes are released once nobody uses it. */
class RuleSets {
  private pinned = new Map<RuleSet, number>();
  constructor(private cur: RuleSet, private readonly pool: Sandbox) {}
  get current(): RuleSet {
    return this.cur;
  }
  /** Makes `rs` current; the old version goes as soon as no session uses it. */
  swap(rs: RuleSet): void {
    const old = this.cur;
    this.cur = rs;
    if (!this.pinned.has(old)) this.pool.release(old.version);
  }
  pin(): RuleSet {
    this.pinned.set(this.cur, (this.pinned.get(this.cur) ?? 0) + 1);
    return this.cur;
  }
  unpin(rs: RuleSet): void {
    const n = (this.pinned.get(rs) ?? 1) - 1;
    if (n > 0) return void this.pinned.set(rs, n);
    this.pinned.delete(rs);
    if (rs !== this.cur) this.pool.release(rs.version);
  }
  counts(): Map<number, number> {
    return new Map([...this.pinned].map(([rs, n]) => [rs.version, n]));
  }
}

export async function startHost(config: Config, opts: HostOptions = {}): Promise<Host> {
  const own = opts.logger ? null : openHostLog(config.log);
  const log = opts.logger ?? own!.log;
  const flushLog = () => own?.flush();
  const metrics = new Metrics(config.admin.metrics);
  const dataDir = resolve(config.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const seat = opts.seat;
  // The data dir's lock (control.ts), before anything in it is touched; a queue command
  // working on the spool right now is waited for. A cluster's primary holds it for its workers.
  const control = seat ? null : await ControlServer.acquire(dataDir, 'host', START_WAIT_MS, {
    waiting: (h) => log.info({ pid: h.pid }, `waiting for the portcullis command (pid ${h.pid}) working on the data dir`),
    stale: (path) => log.warn({ dataDir }, `took over the data dir: the process that held it is gone (removed its stale ${path})`),
  });
  if (control !== null && !(control instanceof ControlServer)) throw new DataDirInUseError(dataDir, control);
  // What the spools of a cluster's other slots hold (the last run had more processes) is this host's to deliver.
  const adopted = control ? await adoptOrphanSlots(dataDir, 1).catch(async (e: unknown) => {
    await control.close();
    throw e;
  }) : 0;
  if (adopted) log.info({ moved: adopted }, `moved ${adopted} messages from the spools of a cluster's other slots into this one`);
  const store = await openStore(config, dataDir, { log, metrics, backend: seat?.backend }).catch(async (e: unknown) => {
    await control?.close();
    throw e;
  });
  applyMailboxConfig(store, config);
  // Route totals are kept per writer in a shared store: per host on Redis, per worker in a cluster.
  const routesWriter = [config.store.backend === 'redis' ? hostname() : '', seat && seat.slot > 1 ? `w${seat.slot}` : ''].filter(Boolean).join('.');
  const stats = new TrafficStats(Date.now, store, routesWriter);
  const pool = new Sandbox({ workers: config.sandbox.workers, storeCall: storeAccess(store) });
  let front: FrontDoor | undefined;
  let delivery: Delivery | undefined;
  let admin: AdminServer | undefined;
  try {
    const cache = new RuleCache();
    const ruleSet = await loadRuleSet(config, pool, 1, { cache });
    log.info({ version: 1, rules: ruleSet.rules.map((r) => `${r.name}@${r.priority}${r.action === 'enforce' ? '' : `(${r.action})`}`) }, `loaded ${ruleSet.rules.length} rules`);
    logDnsState(log, config, ruleSet);
    for (const w of ruleSet.warnings) log.warn({ version: 1 }, w);
    if (ruleSet.off.length) log.info({ version: 1, off: ruleSet.off.map((r) => r.name) }, `not running: ${ruleSet.off.map((r) => `${r.name} (${offReason(r)})`).join('; ')}`);
    const sets = new RuleSets(ruleSet, pool);
    const spoolDir = seat?.spoolDir ?? dataDir;
    const spool = new Spool(spoolDir, seat ? { sharedMailbox: seat.sharedMailbox } : {});
    const deliv = (delivery = new Delivery({ config, spool, dataDir: spoolDir, log, metrics }));
    await deliv.start(); // what the spool holds from the last run, before new mail arrives
    const mailAdmin = new MailAdmin({ spool, dataDir: spoolDir, queue: deliv.queue, hold: config.delivery.queue.hold, log });
    const controlHandler = (req: AdminRequest) => mailAdmin.handle(req).catch((e: unknown) => {
      log.error({ err: e, request: req }, `${req.op} failed: ${(e as Error).message}`);
      throw e;
    });
    control?.serve(controlHandler);
    const pipeline = new Pipeline(pool, log, metrics);
    // Each worker of a cluster appends to its own record files (record.maxBytes applies to each).
    const recorder = new Recorder(config, log, metrics, seat && seat.slot > 1 ? `w${seat.slot}` : '');
    const door = (front = new FrontDoor({ config, pipeline, delivery: deliv, store, log, metrics, stats, recorder, rules: { pin: () => sets.pin(), unpin: (rs) => sets.unpin(rs) } }));
    const addresses: { host: string; port: number }[] = [];
    for (const l of config.listen) {
      const { host, port } = parseListen(l);
      // smtp-server listens on one address; more listen entries get their own net server.
      const srv = addresses.length === 0 ? door.server.server : (await import('node:net')).createServer((sock) => door.server.connect(sock, {}));
      await new Promise<void>((ok, fail) => {
        srv.once('error', (e: NodeJS.ErrnoException) => fail(Object.assign(new Error(`cannot listen on ${l}: ${e.code === 'EADDRINUSE' ? 'address already in use' : e.message}`), { code: e.code })));
        srv.listen(port, host, () => ok());
      });
      const a = srv.address();
      addresses.push({ host, port: a && typeof a === 'object' ? a.port : port });
      if (addresses.length > 1) door.extra.push(srv);
    }
    const reloader = new Reloader({
      configFile: opts.configFile, overrides: opts.overrides ?? {}, config, ruleSet, sandbox: pool, cache, log, metrics, dataDir: seat?.statusDir ?? dataDir, written: seat?.status,
      apply: (cfg, rs) => {
        applyMailboxConfig(store, cfg);
        door.configure(cfg);
        recorder.configure(cfg);
        deliv.configure(cfg);
        sets.swap(rs);
        if (!opts.logger) log.level = cfg.log.level;
      },
    });
    // Gauges read when /metrics is scraped, from what keeps them.
    metrics.collect('sessions_open', (set) => set({}, door.openSessions));
    metrics.collect('ruleset_version', (set) => set({}, sets.current.version));
    metrics.collect('delivery_queue_messages', async (set) => set({}, (await spool.list('spool')).length));
    metrics.collect('dns_cache_entries', (set) => set({}, store.cacheSize));
    metrics.collect('store_entries', (set) => {
      const sizes = store.sizes;
      for (const kind of Object.keys(sizes) as (keyof typeof sizes)[]) set({ kind }, sizes[kind]);
    });
    // After SMTP: a busy SMTP port is the error to report, and an admin port is never an SMTP one (config.ts).
    const routes = adminRoutes({
      metrics, stats, sessions: door, shadow: pipeline.shadow, blacklist: store, rules: () => sets.current, status: () => reloader.status,
      queue: async () => ({ spool: (await spool.list('spool')).length, quarantine: (await spool.list('quarantine')).length }),
    });
    // A worker's routes answer through its primary's listener.
    if (seat) seat.serve(controlHandler, routes);
    else if (config.admin.listen !== null) admin = await AdminServer.start({ listen: config.admin.listen, token: config.admin.token, routes, log });
    const adminAddress = admin?.address ?? null;
    if (opts.watch) await Promise.all([reloader.watch(), door.tls.watch()]);
    // Counters reach `portcullis stats` through status.json.
    reloader.status.admin = adminAddress && hostPort(adminAddress);
    await reloader.writeStatus();
    const statusTimer = setInterval(() => void reloader.writeStatus(), 10_000);
    const routesTimer = setInterval(() => stats.flush(), 5_000);
    routesTimer.unref();
    statusTimer.unref();
    log.info({ listen: addresses.map((a) => `${a.host}:${a.port}`), dataDir }, `Portcullis listening on ${addresses.map((a) => `${a.host}:${a.port}`).join(', ')}`);
    if (adminAddress) log.info({ admin: hostPort(adminAddress) }, `metrics at http://${hostPort(adminAddress)}/metrics`);
    return {
      config, log, metrics, stats, store, sandbox: pool, addresses, adminAddress,
      current: () => sets.current,
      pins: () => sets.counts(),
      reload: async (reason) => {
        await store.reload(); // what `portcullis blacklist/mailbox` changed on disk
        applyMailboxConfig(store, reloader.currentConfig);
        await reloader.reload(reason);
      },
      status: () => reloader.status,
      reopenLog: () => own?.reopen(),
      close: async () => {
        clearInterval(statusTimer);
        clearInterval(routesTimer);
        control?.stop(); // new requests hear "ask again"; one under way finishes below
        await admin?.close();
        await reloader.close();
        await reloader.writeStatus();
        await door.close();
        await recorder.close(); // the sessions the door's close ended, written
        // After the door: a relayed message in flight still needs its next hop.
        await deliv.close();
        await control?.drain(); // e.g. a delete that waited for an attempt deliv.close() cut short
        await Promise.all([pool.close(), spool.close()]);
        stats.flush(); // the route counts since the last interval
        await store.close();
        await control?.close(); // the data dir is free for a command or the next host
        flushLog();
      },
    };
  } catch (e) {
    await admin?.close().catch(() => undefined);
    await front?.close().catch(() => undefined);
    await delivery?.close().catch(() => undefined);
    await pool.close();
    await store.close();
    await control?.close();
    flushLog();
    throw e;
  }
}

/** HOST:PORT as a URL writes it ([v6]:PORT). */

/** Says at start whether the rules' DNS checks will run (and warns when a rule needs spamd and none is configured), so "why is nothing listed?" has an answer in the log. */
function logDnsState(log: Logger, config: Config, rs: RuleSet): void {
  if (rs.needsSpamd && !config.spamd) {
    const rules = rs.rules.filter((r) => r.needs.includes('spamd')).map((r) => r.name);
    log.warn({ rules }, `no spamd configured (config spamd): ${rules.join(', ')} will fail on every message (451 under the default fail policy)`);
  }
  if (!rs.dnsAll.length) return;
  const rules = rs.rules.filter((r) => r.needs.some((n) => !isHostNeed(n))).map((r) => r.name);
  const zones = rs.dnsAll.map(needName);
  if (config.dns.servers.length) log.info({ servers: config.dns.servers, needs: zones }, `DNS checks via ${config.dns.servers.join(', ')}: ${zones.join(', ')}`);
  else log.warn({ needs: zones, rules }, 'DNS checks are off (no dns.servers; set one or start with --dns HOST:PORT): DNS rules see no DNS facts');
}
