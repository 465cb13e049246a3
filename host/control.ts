/**
 * The data dir's control socket, `<dataDir>/control.sock`: how `portcullis queue` and
 * `portcullis quarantine` reach the running host, and the data dir's lock.
 *
 * Why a socket and not files plus a signal (as `portcullis reload` does with status.json
 * and SIGHUP): a change to the queue must be made by the one process that knows which
 * delivery is under way, and the command must learn what happened (deleted, or delivered
 * while it waited). A Unix socket gives a request and its answer on one connection, with
 * no polling; connecting is itself the test of whether a host runs (no pid from a file that
 * may be stale or reused, no signal to a stranger), and a host that dies closes it. Postfix
 * signals its queue manager through a socket in the same way (postqueue -f → public/qmgr).
 *
 * The socket is also the data dir's lock: whoever listens on it owns the spool. The host
 * takes it before it touches the data dir and keeps it until its spool is closed; a
 * command that finds nobody there takes it itself for the time it changes the spool
 * directly, so a host starting meanwhile waits for it (up to START_WAIT_MS) instead of
 * delivering a message the command is deleting. Two hosts on one data dir (two queues
 * delivering the same files) are refused the same way. A socket file whose process died
 * refuses connections: it is stale, and removed.
 *
 * Protocol: on connect the holder sends one JSON line `{"pid":…,"role":"host"|"command"}`;
 * the client sends one JSON request line (delivery/admin.ts); the holder answers one JSON
 * line and closes.
 */
import { chmod, unlink } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { parseRequest, type AdminAnswer, type AdminRequest } from './delivery/admin.js';

/** Who holds the socket. */
export interface Holder {
  pid: number;
  role: 'host' | 'command';
}

/** How long a starting host waits for a command that holds the data dir. */
export const START_WAIT_MS = 10_000;
/** A holder that does not greet within this is hung: treated as busy, never as stale. */
const GREETING_MS = 3_000;
/** A client sends its request at once after the greeting, or is dropped. */
const REQUEST_MS = 10_000;
/** Requests are one short JSON line. */
const MAX_LINE = 4096;

/** `<dataDir>/control.sock`; an error when the path does not fit a Unix socket address. */
export function controlPath(dataDir: string): string {
  const path = join(dataDir, 'control.sock');
  // sun_path holds 108 bytes with its NUL; Node would silently cut a longer path short.
  if (Buffer.byteLength(path) > 107) {
    throw Object.assign(new Error(`the data dir's control socket ${path} is longer than a Unix socket path may be (107 bytes): use a shorter data dir`), { code: 'ENAMETOOLONG' });
  }
  return path;
}

/** Reads one line from `sock` (null if it closes first, or after `ms` when given). */
function readLine(sock: Socket, ms?: number): Promise<string | null> {
  return new Promise((ok) => {
    let buf = '';
    const timer = ms ? setTimeout(() => done(null), ms) : null;
    const done = (line: string | null): void => {
      if (timer) clearTimeout(timer);
      sock.off('data', onData);
      sock.off('close', onClose);
      sock.off('error', onClose);
      ok(line);
    };
    const onData = (d: Buffer): void => {
      buf += d.toString('utf8');
      const nl = buf.indexOf('\n');
      if (nl >= 0) done(buf.slice(0, nl));
      else if (buf.length > MAX_LINE) done(null);
    };
    const onClose = (): void => done(null);
    sock.on('data', onData);
    sock.on('close', onClose);
    sock.on('error', onClose);
  });
}

function parseJson(line: string | null): unknown {
  if (line === null) return null;
  try {
    return JSON.parse(line) as unknown;
  } catch {
    return null;
  }
}

function isHolder(x: unknown): x is Holder {
  const h = x as Partial<Holder> | null;
  return typeof h?.pid === 'number' && (h.role === 'host' || h.role === 'command');
}

/** A connection to the holder, greeted; null when nobody listens (no socket file, or a stale one). */
async function connectTo(path: string): Promise<{ sock: Socket; holder: Holder } | null> {
  const sock = createConnection(path);
  const connected = await new Promise<NodeJS.ErrnoException | null>((ok) => {
    sock.once('connect', () => ok(null));
    sock.once('error', (e: NodeJS.ErrnoException) => ok(e));
  });
  if (connected) {
    sock.destroy();
    if (connected.code === 'ENOENT' || connected.code === 'ECONNREFUSED') return null;
    throw connected;
  }
  sock.on('error', () => undefined);
  const greeting = parseJson(await readLine(sock, GREETING_MS));
  if (!isHolder(greeting)) {
    sock.destroy();
    throw Object.assign(new Error(`the process holding ${path} does not answer`), { code: 'EBUSY' });
  }
  return { sock, holder: greeting };
}

/**
 * Sends `req` to the holder of the data dir's control socket and waits for its answer,
 * however long the work takes (a delete waits for a delivery under way). Null when nobody
 * holds the socket: no host runs.
 */
export async function ask(dataDir: string, req: AdminRequest): Promise<{ holder: Holder; answer: AdminAnswer } | null> {
  const c = await connectTo(controlPath(dataDir));
  if (!c) return null;
  try {
    c.sock.write(JSON.stringify(req) + '\n');
    const answer = parseJson(await readLine(c.sock)) as AdminAnswer | null;
    if (typeof answer?.text !== 'string') {
      return { holder: c.holder, answer: { ok: false, text: `no answer from ${c.holder.role === 'host' ? 'the host' : 'the command holding the data dir'} (pid ${c.holder.pid}): it may have stopped; see what is left with \`portcullis queue list\`` } };
    }
    return { holder: c.holder, answer: { ok: answer.ok === true, text: answer.text, ...(answer.again ? { again: true } : {}) } };
  } finally {
    c.sock.destroy();
  }
}

/** What `ControlServer.acquire` tells as it goes. */
export interface AcquireEvents {
  /** A command holds the data dir: we wait for it (told once). */
  waiting?: (h: Holder) => void;
  /** A socket whose process died was removed (a host killed, a machine rebooted): we take over. */
  stale?: (path: string) => void;
}

/** Another live host (or a command that did not finish in time) holds the data dir. */
export class DataDirInUseError extends Error {
  constructor(readonly dataDir: string, readonly holder: Holder) {
    super(holder.role === 'host'
      ? `the data dir ${dataDir} is in use by another Portcullis host (pid ${holder.pid}): stop it first, or give this one its own dataDir`
      : `the data dir ${dataDir} is in use by a portcullis command (pid ${holder.pid}) that did not finish within ${START_WAIT_MS / 1000} s`);
  }
}

export class ControlServer {
  private handler: ((req: AdminRequest) => Promise<AdminAnswer>) | null = null;
  private stopping = false;
  private readonly working = new Set<Promise<unknown>>();
  private readonly sockets = new Set<Socket>();

  private constructor(private readonly server: Server, private readonly role: Holder['role']) {
    server.on('connection', (sock) => this.serveOne(sock));
  }

  /**
   * Takes the data dir's control socket, removing a stale one. When another process holds
   * it: waits up to `waitMs` while that is a command (its work is short; `waiting` is
   * told once), then returns the holder instead.
   */
  static async acquire(dataDir: string, role: Holder['role'], waitMs: number, tell: AcquireEvents = {}): Promise<ControlServer | Holder> {
    const path = controlPath(dataDir);
    const deadline = Date.now() + waitMs;
    let told = false;
    for (;;) {
      const server = createServer();
      const err = await new Promise<NodeJS.ErrnoException | null>((ok) => {
        server.once('error', (e: NodeJS.ErrnoException) => ok(e));
        server.listen(path, () => ok(null));
      });
      if (!err) {
        // Only the owner (and its group) may change the queue.
        await chmod(path, 0o660);
        return new ControlServer(server, role);
      }
      if (err.code !== 'EADDRINUSE') throw err;
      const c = await connectTo(path);
      if (!c) {
        // Stale: its process died without removing it. (Two processes finding the same
        // stale socket in the same instant could both take it: a race only a crash opens.)
        await unlink(path).catch(() => undefined);
        tell.stale?.(path);
        continue;
      }
      c.sock.destroy();
      if (c.holder.role === 'host' || Date.now() >= deadline) return c.holder;
      if (!told) tell.waiting?.(c.holder);
      told = true;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** From now on requests go to `handler` (until then they are answered "ask again"). */
  serve(handler: (req: AdminRequest) => Promise<AdminAnswer>): void {
    this.handler = handler;
  }

  private serveOne(sock: Socket): void {
    this.sockets.add(sock);
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('error', () => undefined);
    sock.write(JSON.stringify({ pid: process.pid, role: this.role } satisfies Holder) + '\n');
    const work = readLine(sock, REQUEST_MS).then(async (line) => {
      if (line === null) return void sock.destroy();
      const req = parseRequest(parseJson(line));
      let answer: AdminAnswer;
      if (!req) answer = { ok: false, text: 'not a request this version understands' };
      else if (this.stopping || !this.handler) answer = { ok: false, again: true, text: `the ${this.role} is ${this.stopping ? 'stopping' : 'starting'}` };
      else answer = await this.handler(req).catch((e: unknown) => ({ ok: false, text: `failed: ${(e as Error).message}` }));
      sock.end(JSON.stringify(answer) + '\n');
    });
    this.working.add(work);
    void work.finally(() => this.working.delete(work));
  }

  /** Stops taking requests: from now on they are answered "ask again". */
  stop(): void {
    this.stopping = true;
  }

  /** Stops taking requests and waits for those under way. */
  async drain(): Promise<void> {
    this.stopping = true;
    // A connection that has not sent its request yet gets "ask again" when it does (or is
    // dropped after REQUEST_MS): either way this ends.
    while (this.working.size) await Promise.allSettled([...this.working]);
  }

  /** Drains, then lets go of the socket (the file goes with it). */
  async close(): Promise<void> {
    await this.drain();
    await new Promise<void>((ok) => {
      this.server.close(() => ok());
      for (const s of this.sockets) s.destroy();
    });
  }
}
