/**
 * A real downstream MTA for delivery tests: a second smtp-server on 127.0.0.1 that keeps
 * every message it accepted, byte for byte, and answers recipients and messages as the
 * test says.
 */
import { createServer, type Socket } from 'node:net';
import { SMTPServer, type SMTPServerAddress, type SMTPServerSession } from 'smtp-server';

export interface Received {
  from: string;
  to: string[];
  /** The message as the next hop got it (dot-unstuffed). */
  raw: Buffer;
  /** Whether the session had switched to TLS, and who authenticated. */
  secure: boolean;
  user: string | null;
  /** DSN parameters as the next hop parsed them: MAIL's RET/ENVID, each RCPT's NOTIFY/ORCPT. */
  dsn: { ret: string | null; envid: string | null; rcpts: ({ notify?: string[]; orcpt?: string } | null)[] };
}

export interface NextHopOptions {
  /** The reply for a recipient: null accepts it; e.g. '550 5.1.1 No such user' refuses it. */
  rcpt?: (address: string) => string | null;
  /** The reply to the final dot: null accepts. */
  data?: (m: Received) => string | null;
  /** Offer STARTTLS (with smtp-server's built-in test certificate). Default false. */
  starttls?: boolean;
  /** Listen on this port (default: any free one). */
  port?: number;
  /** Require AUTH with these credentials (offered without TLS too). */
  auth?: { user: string; pass: string };
}

export interface TestNextHop {
  port: number;
  received: Received[];
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

/** An smtp-server error carrying an exact reply line: `550 5.1.1 text`. */
function replyErr(line: string): Error & { responseCode: number } {
  const code = Number(line.slice(0, 3));
  return Object.assign(new Error(line.slice(4)), { responseCode: code });
}

export async function startNextHop(opts: NextHopOptions = {}): Promise<TestNextHop> {
  const received: Received[] = [];
  const server = new SMTPServer({
    authOptional: !opts.auth,
    allowInsecureAuth: true,
    disabledCommands: [...(opts.auth ? [] : ['AUTH']), ...(opts.starttls ? [] : ['STARTTLS'])],
    onAuth(a, _s, cb) {
      if (a.username === opts.auth?.user && a.password === opts.auth?.pass) return cb(null, { user: a.username });
      cb(Object.assign(new Error('Authentication failed'), { responseCode: 535 }));
    },
    // The reply text is ours exactly (no enhanced code added by smtp-server).
    hideENHANCEDSTATUSCODES: true,
    // Offer DSN (RFC 3461), so a relay passes the client's parameters on.
    hideDSN: false,
    logger: false,
    closeTimeout: 200,
    onRcptTo(a: SMTPServerAddress, _s, cb) {
      const r = opts.rcpt?.(a.address) ?? null;
      cb(r ? replyErr(r) : null);
    },
    onData(stream, s, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const m: Received = { from: s.envelope.mailFrom ? s.envelope.mailFrom.address : '', to: s.envelope.rcptTo.map((r) => r.address), raw: Buffer.concat(chunks), secure: s.secure, user: typeof s.user === 'string' ? s.user : null, dsn: dsnOf(s) };
        const r = opts.data?.(m) ?? null;
        if (r) return cb(replyErr(r));
        received.push(m);
        cb(null, 'Ok: stored');
      });
    },
  });
  server.on('error', () => undefined);
  await new Promise<void>((ok) => server.listen(opts.port ?? 0, '127.0.0.1', () => ok()));
  const addr = server.server.address();
  return {
    port: addr && typeof addr === 'object' ? addr.port : 0,
    received,
    close: () => new Promise<void>((ok) => server.close(() => ok())),
  };
}

function dsnOf(s: SMTPServerSession): Received['dsn'] {
  const env = s.envelope as typeof s.envelope & { dsn?: { ret?: string; envid?: string } };
  const rcpts = env.rcptTo.map((r) => (r as SMTPServerAddress & { dsn?: { notify?: string[]; orcpt?: string } }).dsn ?? null);
  return { ret: env.dsn?.ret ?? null, envid: env.dsn?.envid ?? null, rcpts };
}

/** A port on 127.0.0.1 where nothing listens (a next hop that is down). */
export async function deadPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((ok) => srv.listen(0, '127.0.0.1', () => ok()));
  const a = srv.address();
  await new Promise<void>((ok) => srv.close(() => ok()));
  return a && typeof a === 'object' ? a.port : 0;
}

/** A server that takes connections and never answers (a next hop or a spamd stuck or overloaded); it keeps its half of a half-closed connection open. */
export async function silentServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const srv = createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.resume();
  });
  await new Promise<void>((ok) => srv.listen(0, '127.0.0.1', () => ok()));
  const a = srv.address();
  return {
    port: a && typeof a === 'object' ? a.port : 0,
    close: () => new Promise<void>((ok) => (sockets.forEach((s) => s.destroy()), srv.close(() => ok()))),
  };
}
