/**
 * Our subclass of smtp-server's connection. smtp-server has no hook for HELO/EHLO or for
 * the DATA command before 354, rewrites the codes of hook errors (a 550 goes out as
 * "550 5.1.1"), always waits 100 ms before greeting, and at shutdown leaves idle clients
 * connected for 30 s. This class fixes those five things, and counts every reply it
 * writes (replies_total), and nothing else; everything else is smtp-server's.
 */
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import type { SMTPServerSession } from 'smtp-server';
import { formatReply, OWN_REPLY_TEXT, type Reply } from './reply.js';

export interface ConnectionHooks {
  /** Read per connection, so a config reload applies to new connections. */
  greetPauseMs: () => number;
  /** Every reply line (or multi-line reply) written to the client, by its code: counted. */
  replied(code: number): void;
  /** Runs the helo phase; a Reply refuses the command, null lets smtp-server answer. */
  helo(session: SMTPServerSession, verb: 'HELO' | 'EHLO', name: string): Promise<Reply | null>;
  /** Runs the data phase before the 354; a Reply refuses DATA. */
  data(session: SMTPServerSession): Promise<Reply | null>;
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

    override init(): void {
      this._setListeners(() => {
        const server = (this as unknown as { _server: ServerInternals })._server;
        if (server.options.maxClients && server.connections.size > server.options.maxClients) {
          return this.send(421, `${this.name} Too many connected clients, try again in a moment`, false);
        }
        // smtp-server's fixed 100 ms early-talker pause, made an option (0 = off).
        const pause = hooks.greetPauseMs();
        if (pause > 0) setTimeout(() => this.connectionReady(), pause).unref();
        else this.connectionReady();
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

    override _onCommand(command: Buffer, callback?: () => void): void {
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

    override handler_DATA(command: Buffer, callback: () => void): void {
      if (!this.session.envelope.rcptTo.length) return super.handler_DATA(command, callback);
      hooks.data(this.session).then(
        (r) => (r ? this.answer(r, callback) : super.handler_DATA(command, callback)),
        (e: unknown) => this.answer(hooks.failed(this.session, e), callback),
      );
    }
  } as typeof SMTPConnection;
}
