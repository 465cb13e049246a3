/**
 * The reply to the final dot of an accepted message: a delivery outcome in SMTP words.
 * The one place that decides what the client hears about delivery; 250 only for the
 * outcomes that mean the message is safe (spooled, quarantined, discarded on purpose, or
 * taken by the next hop).
 */
import type { DeliveryOutcome } from '../delivery/outcome.js';
import { REPLIES, type Reply } from './reply.js';

export function outcomeReply(o: DeliveryOutcome, sessionId: string): Reply {
  switch (o.kind) {
    case 'queued':
    case 'quarantined':
    case 'discarded':
      // A discarded message is answered as if queued: the sender learns nothing from it.
      return REPLIES.queued(o.id);
    case 'relayed':
      return REPLIES.relayed(o.id, o.response);
    case 'relayed-in-part':
      return REPLIES.relayed(o.id, `${o.accepted} of ${o.recipients} recipients accepted, the rest queued or bounced`);
    case 'refused':
      return refusalReply(o);
    case 'next-hop-down':
      return REPLIES.nextHopDown(sessionId);
    case 'spool-full':
      return REPLIES.spoolFailure(sessionId);
  }
}

/**
 * The next hop's refusal passed on: its code and enhanced status (RFC 5321 §4.2: the
 * class is what matters), its text prefixed with the next hop.
 */
function refusalReply(o: Extract<DeliveryOutcome, { kind: 'refused' }>): Reply {
  // 421 means "closing": from us it would end the client's session, so 451 (RFC 5321 §3.8).
  const code = o.code === 421 || o.code < 400 || o.code > 599 ? 451 : o.code;
  // Its enhanced status only when its class agrees with the code we send (RFC 3463 §2).
  const cls = `${Math.floor(code / 100)}.`;
  const status = o.status?.startsWith(cls) ? o.status.slice(cls.length) : '0.0';
  return { code, status, text: o.nextHop ? `Next hop ${o.nextHop}: ${o.text}` : `Next hop: ${o.text}` };
}
