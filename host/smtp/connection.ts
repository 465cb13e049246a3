/**
 * Our subclass of smtp-server's connection. smtp-server has no hook for HELO/EHLO or for
 * the DATA command before 354, rewrites the codes of hook errors (a 550 goes out as
 * "550 5.1.1"), always waits 100 ms before greeting and refuses anyone who talks before
 * it, at shutdown leaves idle clients connected for 30 s, and has no hook for RSET. This
 * class fixes those things, and counts every reply it writes (replies_total), and nothing
 * else; everything else is smtp-server's.
 */
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import type { SMTPServerSession } from 'smtp-server';
import { formatReply, OWN_REPLY_TEXT, type Reply } from './reply.js';

/** How one connection is greeted (see `ConnectionHooks.greeting`). */
export interface Greeting {
  /** Wait this long before the 220 (pregreet detection: smtpf's greet pause, postscreen's greet_wait); 0 = at once. */
  pauseMs: number;
  /**
   * A command sent before the 220: `refuse` it (421 "You talk too soon", smtp-server's
   * early-talker check), or `hold` it and answer it after the greeting, as Postfix's smtpd
   * does for the clients postscreen let through. RFC 5321 §3.1 has the client wait for the
   * greeting; a client known to be a real MTA is not judged on it.
   */
  earlyTalk: 'refuse' | 'hold';
}

export interface ConnectionHooks {
  /**
   * How to greet a client from `ip` (as the socket gives it). Read per connection, so a
   * config reload, or a client marked well-behaved meanwhile, applies to the next one.
   */
  greeting(ip: string): Greeting;
  /** Every reply line (or multi-line reply) written to the client, by its code: counted. */
  replied(code: number): void;
  /** Runs the helo phase; a Reply refuses the command, null lets smtp-server answer. */
  helo(session: SMTPServerSession, verb: 'HELO' | 'EHLO', name: string): Promise<Reply | null>;
  /** Runs the data phase before the 354; a Reply refuses DATA. */
  data(session: SMTPServerSession): Promise<Reply | null>;
  /** RSET (RFC 5321 §4.1.1.5): the transaction under way is abandoned; smtp-server has no hook for it. */
  rset(session: SMTPServerSession): void;
  /** The one place an unexpected error becomes a reply (logged and counted there). */
  failed(session: SMTPServerSession, e: unknown): Reply;
}

/** A connection the server can ask to end (see stop()). */
export interface Stoppable {
  /** Ends the session with `reply` (a 421) once it is between commands, or at once with `now`. */
  stop(reply: Reply, now?: boolean): void;
}

export function isStoppable(c: unknown): c is Stoppable {
  return typeof (c as Partial<Stoppable> | null)?.stop === 'function';
}

interface ServerInternals {
  options: { maxClients?: number };
  connections: Set<unknown>;
}

export function connectionClass(hooks: ConnectionHooks): typeof SMTPConnection {
  return class PortcullisConnection extends SMTPConnection implements Stoppable {
    /** Set once the server is stopping: the 421 this connection ends with. */
    private stopReply: Reply | null = null;
    /** Commands held until the greeting is out (`earlyTalk: 'hold'`), each run when it is; null once greeted or when refused instead. */
    private early: (() => void)[] | null = null;

    override init(): void {
      this._setListeners(() => {
        const server = (this as unknown as { _server: ServerInternals })._server;
        if (server.options.maxClients && server.connections.size > server.options.maxClients) {
          return this.send(421, `${this.name} Too many connected clients, try again in a moment`, false);
        }
        // smtp-server's fixed 100 ms early-talker pause, made an option (0 = off).
        const greeting = hooks.greeting(this.remoteAddress);
        if (greeting.earlyTalk === 'hold') this.early = [];
        const ready = () => this.connectionReady(() => this.greeted());
        if (greeting.pauseMs > 0) setTimeout(ready, greeting.pauseMs).unref();
        else ready();
      });
    }

    /** Every reply smtp-server writes goes through here; ours through sendOwn. */
    override send(code: number, data?: string | string[] | null, context?: string | false): void {
      hooks.replied(code);
      // Text we formatted (a ReplyError's message, our 250 after DATA) starts with its
      // enhanced status: smtp-server must not add one of its own (it would say 5.1.1).
      if (typeof data === 'string' && OWN_REPLY_TEXT.test(data)) super.send(code, data, false);
      else super.send(code, data, context);
      // Stopping: once this reply is out and nothing else is under way, say goodbye.
      if (this.stopReply && code !== 421) setImmediate(() => this.stopIfIdle());
    }

    /**
     * The server is shutting down (RFC 5321 §3.8): a client waiting to send its next
     * command gets `reply` (a 421) now and the connection closes; one whose command is
     * being answered, or whose message is being received or decided on, gets its reply
     * first (a message that got its 250 is safe), then the 421. `now`: whatever it is
     * doing (the grace period is over).
     */
    stop(reply: Reply, now = false): void {
      this.stopReply = reply;
      if (now && !this._closing) this.sendOwn(reply);
      else this.stopIfIdle();
    }

    /** Between commands: no reply owed (a hook running) and no message on its way in or being decided on. */
    private idle(): boolean {
      return !this._handlerPending && !this._dataStream;
    }

    private stopIfIdle(): void {
      if (this.stopReply && !this._closing && this.idle()) this.sendOwn(this.stopReply); // a 421 closes
    }

    /** The 220 is out: the commands held meanwhile run, in order. */
    private greeted(): void {
      const held = this.early;
      this.early = null;
      for (const run of held ?? []) run();
    }

    override _onCommand(command: Buffer, callback?: () => void): void {
      // Sent before our 220 by a client we do not judge on it: run once the greeting is
      // out. The parser waits for `callback`, so later commands queue up behind this one.
      if (this.early && !this._ready) return void this.early.push(() => this._onCommand(command, callback));
      // A command that arrives while stopping (pipelined after a message, say) is answered
      // with our 421 rather than run, or smtp-server's own shutdown text.
      if (this.stopReply && !this._upgrading) return void this.sendOwn(this.stopReply);
      super._onCommand(command, callback);
    }

    /** Writes one of our replies as is, past send()'s handling of smtp-server's own (its status, the stop check). */
    private sendOwn(r: Reply): void {
      hooks.replied(r.code);
      super.send(r.code, formatReply(r).slice(4), false);
    }

    private answer(r: Reply, callback: () => void): void {
      this.sendOwn(r);
      callback();
    }

    private helo(verb: 'HELO' | 'EHLO', command: Buffer, callback: () => void, proceed: () => void): void {
      const parts = command.toString().trim().split(/\s+/);
      // Syntax errors are smtp-server's to answer (501); rules see only a HELO with a name.
      if (parts.length !== 2 || this._closing) return proceed();
      hooks.helo(this.session, verb, parts[1]!).then(
        (r) => (r ? this.answer(r, callback) : proceed()),
        (e: unknown) => this.answer(hooks.failed(this.session, e), callback),
      );
    }

    override handler_HELO(command: Buffer, callback: () => void): void {
      this.helo('HELO', command, callback, () => super.handler_HELO(command, callback));
    }

    override handler_EHLO(command: Buffer, callback: () => void): void {
      this.helo('EHLO', command, callback, () => super.handler_EHLO(command, callback));
    }

    override handler_RSET(command: Buffer, callback: () => void): void {
      hooks.rset(this.session);
      super.handler_RSET(command, callback);
    }

    override handler_DATA(command: Buffer, callback: () => void): void {
      if (!this.session.envelope.rcptTo.length) return super.handler_DATA(command, callback);
      hooks.data(this.session).then(
        (r) => (r ? this.answer(r, callback) : super.handler_DATA(command, callback)),
        (e: unknown) => this.answer(hooks.failed(this.session, e), callback),
      );
    }
  } as typeof SMTPConnection;
}
