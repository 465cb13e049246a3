/**
 * The port a session recorder plugs into (config `record`; host/record implements it and
 * host.ts hands it in): the front door opens a tap per session, builds the session from
 * the tap's deps (so the facts the session fetches pass through it, DNS cache hits
 * included) and tells it each command's outcome after the reply is decided. A tap only
 * collects; whatever it does with the session at `end` must never hold a reply.
 */
import type { RecordedStep } from '../../sdk/index.js';
import type { Reply } from './reply.js';
import type { ConnectionFacts, MessageResult, SessionDeps } from './session.js';

export interface SessionTap {
  /** What the session is built from: the front door's deps with its fact sources seen by the tap. */
  readonly deps: SessionDeps;
  /** One command's outcome (every command but the message). */
  step(s: Exclude<RecordedStep, { cmd: 'message' }>): void;
  /** The end of data: the message as received, what the rules made of it (null: an internal error), the final reply. */
  message(t: number, msg: Buffer, result: MessageResult | null, wire: Reply, tls: boolean): void;
  /** The session is over. */
  end(): void;
}

export interface SessionRecorder {
  /** A tap for a new session, or null when this one is not recorded. */
  open(conn: ConnectionFacts, deps: SessionDeps, ruleSetVersion: number): SessionTap | null;
}
