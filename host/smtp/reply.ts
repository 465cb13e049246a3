/**
 * SMTP replies: one typed value, the one place that writes the wire line, and the error
 * that carries a reply through smtp-server's callbacks.
 *
 * A reply carries the enhanced status code (RFC 3463) without its class digit, which is
 * derived from the reply code when the line is written, so `450 5.7.1` cannot be built.
 */
import { DEFAULT_STATUS, type EnhancedStatus, type Phase } from '../../sdk/index.js';
import type { PhaseDecision } from '../pipeline/pipeline.js';

export interface Reply {
  /** Basic reply code (RFC 5321 §4.2). */
  code: number;
  /** Enhanced status "subject.detail", e.g. "7.1"; null for replies that carry none (220, 354). */
  status: string | null;
  text: string;
}

/** The reply line, without CRLF: `550 5.7.1 Relaying denied`. */
export function formatReply(r: Reply): string {
  return r.status ? `${r.code} ${Math.floor(r.code / 100)}.${r.status} ${r.text}` : `${r.code} ${r.text}`;
}

/** What follows the code in a reply line we wrote: it starts with the enhanced status (`5.7.1 …`). */
export const OWN_REPLY_TEXT = /^[245]\.\d{1,3}\.\d{1,3} /;

/**
 * An error that carries our exact reply through smtp-server's hook callbacks: smtp-server
 * sends `responseCode` and `message`, and our connection class (connection.ts) writes a
 * message that starts with an enhanced status as is.
 */
export class ReplyError extends Error {
  readonly responseCode: number;
  constructor(readonly reply: Reply) {
    super(formatReply(reply).slice(4));
    this.responseCode = reply.code;
  }
}

/** Replies the host itself sends. */
export const REPLIES = {
  /** RFC 5321 §3.6.2: we are not an open relay. 5.7.1 = delivery not authorized. */
  relayDenied: { code: 554, status: '7.1', text: 'Relaying denied' },
  /** A rule failed (timeout, crash…) under the tempfail policy; RFC 3463 4.3.0 = other mail system status. */
  ruleFailure: (sessionId: string): Reply => ({ code: 451, status: '3.0', text: `Temporary local problem, please try again later (session ${sessionId})` }),
  /** Something unexpected in the host; nothing internal is revealed. */
  internal: (sessionId: string): Reply => ({ code: 451, status: '3.0', text: `Internal error, please try again later (session ${sessionId})` }),
  /** The spool could not take the message; 4.3.1 = mail system full. */
  spoolFailure: (sessionId: string): Reply => ({ code: 452, status: '3.1', text: `Insufficient system storage, please try again later (session ${sessionId})` }),
  queued: (id: string): Reply => ({ code: 250, status: '0.0', text: `Ok: queued as ${id}` }),
  /** Relay mode: the next hop said 250 for every recipient (its reply is passed on for the sender's logs). */
  relayed: (id: string, response: string): Reply => ({ code: 250, status: '0.0', text: `Ok: relayed as ${id} (next hop: ${response})` }),
  /** Relay mode: no next hop answered (refused, timed out, dropped); RFC 3463 4.4.1 = no answer from host. */
  nextHopDown: (sessionId: string): Reply => ({ code: 451, status: '4.1', text: `Next hop not reachable, please try again later (session ${sessionId})` }),
  /** RFC 4954 §6: 535 for a wrong user name or password; 5.7.8 = authentication credentials invalid. */
  authFailed: { code: 535, status: '7.8', text: 'Authentication credentials invalid' },
  /** RFC 5321 §3.8: a server that is stopping sends 421 and closes; 4.3.2 = system not accepting network messages (RFC 3463). */
  shuttingDown: (hostname: string): Reply => ({ code: 421, status: '3.2', text: `${hostname} Service shutting down` }),
  /** The administrator ended the session (admin API KILL); 421 closes (RFC 5321 §3.8), 4.7.0 = security or policy status. */
  killed: (hostname: string): Reply => ({ code: 421, status: '7.0', text: `${hostname} Connection closed by the administrator` }),
  /** The transaction's score (`ctx.score`) reached the config's reject threshold; 5.7.1 = not authorized. */
  scoreReject: (score: number, limit: number): Reply => ({ code: 550, status: '7.1', text: `Message refused: its spam score ${score} is at or over ${limit}` }),
  /** …or its tempfail threshold: the client may try again (a sender that fixed itself, a list that dropped it). */
  scoreTempfail: (score: number, limit: number): Reply => ({ code: 451, status: '7.1', text: `Message deferred: its spam score ${score} is at or over ${limit}` }),
  /**
   * What smtp-server itself answers to a message over `limits.maxMessageBytes` (RFC 5321
   * §4.5.3.1.7; 5.3.4 = message too big for system): written here for the logs only.
   */
  tooBig: (max: number): Reply => ({ code: 552, status: '3.4', text: `Error: message exceeds fixed maximum message size ${max}` }),
  /** The external checker refused the content: 552 ends the transaction (RFC 5321 §4.2.2), 5.7.1 = not authorized. */
  checkerRejected: { code: 552, status: '7.1', text: 'Message rejected by content filter' },
  /** The external checker failed or timed out: the client keeps the message and retries. */
  checkerFailed: (sessionId: string): Reply => ({ code: 451, status: '7.1', text: `Message could not be checked, please try again later (session ${sessionId})` }),
} as const;

/** The reply for a reject/tempfail verdict (a policy refusal, 7.1, unless the rule says otherwise). */
export function verdictReply(code: number, text: string, status?: EnhancedStatus): Reply {
  return { code, status: status ?? DEFAULT_STATUS, text };
}

/** A drop: 421 closes the connection (RFC 5321 §3.8); 4.7.0 = security or policy status. */
export function dropReply(text: string): Reply {
  return { code: 421, status: '7.0', text };
}

/** The reply a decision sends at a phase, or null when the command proceeds. */
export function replyFor(phase: Phase, d: PhaseDecision, sid: string): Reply | null {
  if (phase === 'close') return null;
  if (d.failure) return phase === 'connect' ? { ...REPLIES.ruleFailure(sid), code: 421 } : REPLIES.ruleFailure(sid);
  const v = d.verdict;
  switch (v.action) {
    case 'reject':
      // RFC 5321 §3.1: a refused connection gets 554 instead of the greeting.
      return verdictReply(phase === 'connect' ? 554 : v.code, v.text, v.status);
    case 'tempfail':
      // At connect the only temporary refusal is 421 (RFC 5321 §3.1), which closes.
      return verdictReply(phase === 'connect' ? 421 : v.code, v.text, v.status);
    case 'drop':
      return dropReply(v.text);
    default:
      return null;
  }
}
