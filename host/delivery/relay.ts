/**
 * Relay mode: the message goes to its next hop(s) while the client waits after its final
 * dot, and the client hears the next hop's verdict.
 *
 * - Every recipient accepted (250 to DATA) → 250.
 * - Every recipient refused for good (5xx) → that 5xx, its text prefixed with the next hop.
 * - Every recipient refused for now (4xx) → that 4xx (421 becomes 451: our 421 would close
 *   the client's connection); no answer at all (refused connection, timeout) → 451 4.4.1.
 * - Mixed outcomes: some recipients have the message already, so any 4xx/5xx would make the
 *   client send it to them again. We answer 250 once the rest is safe on disk: the
 *   recipients refused for now are spooled for the queue to retry, those refused for good
 *   get a bounce (none to the null sender). If the spool cannot take them, 452 4.3.1: the
 *   client retries and the accepted recipients may get the message twice, but none loses it.
 */
import type { Logger } from 'pino';
import type { Counters } from '../metrics.js';
import { REPLIES, type Reply } from '../smtp/reply.js';
import type { Spool, SpoolEnvelope } from '../spool/spool.js';
import { spoolBounce } from './bounce.js';
import { oneLine, type RcptResult } from './nexthop.js';
import type { Routes } from './routes.js';

export interface RelayDeps {
  routes: Routes;
  spool: Spool;
  hostname: string;
  log: Logger;
  counters: Counters;
  /** Hands a spooled message to the queue. */
  enqueue(id: string): void;
}

export async function relay(d: RelayDeps, env: SpoolEnvelope, message: Buffer, sessionId: string, log: Record<string, unknown>): Promise<Reply> {
  const results = await d.routes.send(d.spool, env, env.rcptTo, message);
  const accepted = results.filter((r) => r.status === 'accepted');
  const refused = results.filter((r) => r.status === 'refused');
  const deferred = results.filter((r) => r.status === 'deferred');
  const count = (result: string, n: number) => n && d.counters.inc('deliveries_total', { path: 'relay', result }, n);
  const describe = (rs: RcptResult[]) => rs.map((r) => `<${r.rcpt}> ${r.remote ?? 'mailbox'}: ${r.text}`).join('; ');

  if (accepted.length === results.length) {
    d.log.info({ ...log, via: [...new Set(accepted.map((r) => r.remote ?? 'mailbox'))] }, `relayed ${env.id}: ${describe(accepted)}`);
    count('delivered', accepted.length);
    return REPLIES.relayed(env.id, oneLine(accepted[0]?.text ?? '', 120));
  }
  if (!accepted.length && (!refused.length || !deferred.length)) {
    // One kind of answer for the whole message: it is the client's.
    const first = (refused[0] ?? deferred[0])!;
    const reply = downstreamReply(first, sessionId);
    d.log.info({ ...log, reply: `${reply.code} ${reply.text}` }, `not relayed ${env.id} (${refused.length ? 'refused' : 'deferred'} by the next hop): ${describe(results)}`);
    count(refused.length ? 'refused' : 'deferred', results.length);
    return reply;
  }
  // Mixed: make the rest safe, then 250.
  count('delivered', accepted.length);
  if (deferred.length) {
    const rest: SpoolEnvelope = { ...env, rcptTo: deferred.map((r) => r.rcpt) };
    try {
      await d.spool.store('spool', rest, [message]);
    } catch (e) {
      d.log.error({ ...log, err: e }, `relayed ${env.id} to some recipients but cannot spool the others (${(e as Error).message}): answering 452; the client's retry may duplicate it for ${accepted.map((r) => `<${r.rcpt}>`).join(', ')}`);
      d.counters.inc('spool_failures_total');
      return REPLIES.spoolFailure(sessionId);
    }
    d.enqueue(env.id);
    d.log.info({ ...log, rcpts: rest.rcptTo }, `relayed ${env.id} in part; queued for retry: ${describe(deferred)}`);
    count('deferred', deferred.length);
  }
  if (refused.length && !(await spoolBounce(d, { original: env, message, failures: refused, reason: 'refused by the next hop', path: 'relay' }, d.enqueue))) {
    return REPLIES.spoolFailure(sessionId);
  }
  d.log.info({ ...log }, `relayed ${env.id} to ${accepted.map((r) => `<${r.rcpt}>`).join(', ')}`);
  return REPLIES.relayed(env.id, `${accepted.length} of ${results.length} recipients accepted, the rest queued or bounced`);
}

/** The client's reply for a next hop's refusal (RFC 5321 §4.2: the class is what matters). */
export function downstreamReply(r: RcptResult, sessionId: string): Reply {
  if (!r.code) return REPLIES.nextHopDown(sessionId);
  const m = /^\d{3}[ -](?:(\d)\.(\d{1,3}\.\d{1,3})\s+)?(.*)$/.exec(r.text);
  // 421 means "closing": from us it would end the client's session, so 451 (RFC 5321 §3.8).
  const code = r.code === 421 || r.code < 400 || r.code > 599 ? 451 : r.code;
  const cls = String(Math.floor(code / 100));
  const status = m?.[1] === cls ? m[2]! : '0.0';
  return { code, status, text: `Next hop ${r.remote ?? ''}: ${oneLine(m?.[3] ?? r.text, 200)}`.replace(' : ', ': ') };
}
