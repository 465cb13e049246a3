/**
 * The admin HTTP listener (node:http), on an address of its own, never an SMTP one: it
 * serves the route table it is given (routes.ts) and decides who may call what, in one
 * place:
 *
 * - with a token set, a request needs `Authorization: Bearer <token>` (401 otherwise),
 *   except a `scrape` route (GET /metrics) on a loopback listener, which Prometheus on
 *   the same machine may scrape without it;
 * - without a token, the listener is on loopback (the config refuses anything else), and
 *   whoever can reach it is on this machine.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { parseListen } from '../config/config.js';
import { isLoopback } from '../net.js';

/** What a route answers. */
export interface AdminResponse {
  status: number;
  contentType: string;
  body: string;
}

export interface Route {
  /**
   * `scrape`: open without the token on a loopback listener; `token`: needs the token
   * whenever one is set; `page`: always open (a static page that holds no data and asks
   * the API with the token it is given).
   */
  access: 'scrape' | 'token' | 'page';
  handle(req: IncomingMessage): Promise<AdminResponse>;
}

/** `METHOD /path` → its route (HEAD is answered as GET, without the body). */
export type Routes = Readonly<Record<`${'GET' | 'POST' | 'DELETE'} /${string}`, Route>>;

export interface AdminOptions {
  /** HOST:PORT (port 0: any free port; see `address`). */
  listen: string;
  token: string | null;
  routes: Routes;
  log: Logger;
}

const text = (status: number, body: string): AdminResponse => ({ status, contentType: 'text/plain; charset=utf-8', body: `${body}\n` });

export class AdminServer {
  private constructor(
    private readonly server: Server,
    /** Where it listens, with the real port when the config asked for port 0. */
    readonly address: { host: string; port: number },
  ) {}

  static async start(o: AdminOptions): Promise<AdminServer> {
    const { host, port } = parseListen(o.listen);
    const access = accessCheck(o.token, isLoopback(host));
    const server = createServer((req, res) => void answer(req, res, o.routes, access, o.log));
    // A scraper or a script, not a browser left open: nobody needs minutes to send headers.
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    await new Promise<void>((ok, fail) => {
      server.once('error', (e: NodeJS.ErrnoException) => fail(Object.assign(new Error(`cannot listen on ${o.listen} (admin.listen): ${e.code === 'EADDRINUSE' ? 'address already in use' : e.message}`), { code: e.code })));
      server.listen(port, host, () => ok());
    });
    server.on('error', (e) => o.log.warn({ err: e }, `admin listener error: ${e.message}`));
    const a = server.address();
    return new AdminServer(server, { host, port: a && typeof a === 'object' ? a.port : port });
  }

  /** Stops listening; requests under way finish, idle keep-alive connections are closed. */
  async close(): Promise<void> {
    const closed = new Promise<void>((ok) => this.server.close(() => ok()));
    this.server.closeIdleConnections();
    await closed;
  }
}

/** Whether a request for `route` may go on. */
type AccessCheck = (req: IncomingMessage, route: Route | undefined) => boolean;

function accessCheck(token: string | null, loopback: boolean): AccessCheck {
  if (token === null) return () => true; // loopback only (config checks)
  // Compared as digests: equal lengths for timingSafeEqual, and no early exit on the first wrong byte.
  const want = digest(token);
  return (req, route) => {
    if (route?.access === 'page' || (route?.access === 'scrape' && loopback)) return true;
    const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
    return m !== null && timingSafeEqual(digest(m[1]!), want);
  };
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

async function answer(req: IncomingMessage, res: ServerResponse, routes: Routes, allowed: AccessCheck, log: Logger): Promise<void> {
  const method = req.method === 'HEAD' ? 'GET' : (req.method ?? '');
  const path = new URL(req.url ?? '/', 'http://admin').pathname;
  const route = (routes as Record<string, Route | undefined>)[`${method} ${path}`];
  let r: AdminResponse;
  if (!allowed(req, route)) {
    // RFC 6750 §3: a request without (valid) credentials gets the scheme to use.
    res.setHeader('WWW-Authenticate', 'Bearer realm="portcullis"');
    r = text(401, 'Unauthorized: send Authorization: Bearer <admin.token>');
  } else if (route) {
    r = await route.handle(req).catch((e: unknown) => {
      log.error({ err: e, method, path }, `admin ${method} ${path} failed: ${(e as Error).message}`);
      return text(500, 'Internal error (see the host log)');
    });
  } else {
    const methods = Object.keys(routes).filter((k) => k.endsWith(` ${path}`)).map((k) => k.split(' ')[0]!);
    if (methods.length) res.setHeader('Allow', [...methods, ...(methods.includes('GET') ? ['HEAD'] : [])].join(', '));
    r = methods.length ? text(405, `Method not allowed: ${path} takes ${methods.join(', ')}`) : text(404, `Not found: ${path}`);
  }
  res.writeHead(r.status, { 'Content-Type': r.contentType, 'Cache-Control': 'no-store' });
  res.end(r.body);
}
