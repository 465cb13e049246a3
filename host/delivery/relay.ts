/**
 * Relay mode: the message goes to its next hop(s) while the client waits after its final
 * dot, and the client hears the next hop's verdict (the SMTP layer words it).
 *
 * - Every recipient accepted (250 to DATA) → relayed.
 * - Every recipient refused for good (5xx), or every one for now (4xx) → refused, with the
 *   next hop's reply; no answer at all (refused connection, timeout) → next hop down.
 * - Mixed outcomes: some recipients have the message already, so any 4xx/5xx would make the
 *   client send it to them again. We report success (relayed in part) once the rest is
 *   safe on disk: the recipients refused for now are spooled for the queue to retry, those
 *   refused for good get a bounce (none to the null sender). If the spool cannot take them,
 *   spool full: the client retries and the accepted recipients may get the message twice,
 *   but none loses it.
 */
import type { Logger } from 'pino';
import type { LabelsOf, Metrics } from '../metrics.js';
import type { Spool, SpoolEnvelope } from '../spool/spool.js';
import { spoolBounce } from './bounce.js';
import { oneLine, type RcptResult } from './nexthop.js';
import type { DeliveryOutcome } from './outcome.js';
import type { Routes } from './routes.js';

export interface RelayDeps {
  routes: Routes;
  spool: Spool;
  hostname: string;
  log: Logger;
  metrics: Metrics;
  /** Hands a spooled message to the queue. */
  enqueue(id: string): void;
}

export async function relay(d: RelayDeps, env: SpoolEnvelope, message: Buffer, log: Record<string, unknown>): Promise<DeliveryOutcome> {
  const results = await d.routes.send(d.spool, env, env.rcptTo, message);
  const accepted = results.filter((r) => r.status === 'accepted');
  const refused = results.filter((r) => r.status === 'refused');
  const deferred = results.filter((r) => r.status === 'deferred');
  const count = (result: LabelsOf<'deliveries_total'>['result'], n: number) => n && d.metrics.inc('deliveries_total', { path: 'relay', result }, n);
  const describe = (rs: RcptResult[]) => rs.map((r) => `<${r.rcpt}> ${r.remote ?? 'mailbox'}: ${r.text}`).join('; ');

  if (accepted.length === results.length) {
    d.log.info({ ...log, via: [...new Set(accepted.map((r) => r.remote ?? 'mailbox'))] }, `relayed ${env.id}: ${describe(accepted)}`);
    count('delivered', accepted.length);
    return { kind: 'relayed', id: env.id, response: oneLine(accepted[0]?.text ?? '', 120) };
  }
  if (!accepted.length && (!refused.length || !deferred.length)) {
    // One kind of answer for the whole message: it is the client's.
    const first = (refused[0] ?? deferred[0])!;
    d.log.info({ ...log, reply: first.text }, `not relayed ${env.id} (${refused.length ? 'refused' : 'deferred'} by the next hop): ${describe(results)}`);
    count(refused.length ? 'refused' : 'deferred', results.length);
    return nextHopAnswer(first);
  }
  // Mixed: make the rest safe, then report success.
  count('delivered', accepted.length);
  if (deferred.length) {
    const rest: SpoolEnvelope = { ...env, rcptTo: deferred.map((r) => r.rcpt) };
    try {
      await d.spool.store('spool', rest, [message]);
    } catch (e) {
      d.log.error({ ...log, err: e }, `relayed ${env.id} to some recipients but cannot spool the others (${(e as Error).message}): answering 452; the client's retry may duplicate it for ${accepted.map((r) => `<${r.rcpt}>`).join(', ')}`);
      d.metrics.inc('spool_failures_total');
      return { kind: 'spool-full' };
    }
    d.enqueue(env.id);
    d.log.info({ ...log, rcpts: rest.rcptTo }, `relayed ${env.id} in part; queued for retry: ${describe(deferred)}`);
    count('deferred', deferred.length);
  }
  if (refused.length && !(await spoolBounce(d, { original: env, message, failures: refused, reason: 'refused by the next hop', path: 'relay' }, d.enqueue))) {
    return { kind: 'spool-full' };
  }
  d.log.info({ ...log }, `relayed ${env.id} to ${accepted.map((r) => `<${r.rcpt}>`).join(', ')}`);
  return { kind: 'relayed-in-part', id: env.id, accepted: accepted.length, recipients: results.length };
}

/**
 * A next hop's answer that refused the message (for every recipient) as the outcome: its
 * reply split into code, enhanced status (RFC 3463) and text; no reply at all (code 0) is
 * a next hop that is down.
 */
export function nextHopAnswer(r: RcptResult): DeliveryOutcome {
  if (!r.code) return { kind: 'next-hop-down' };
  const m = /^\d{3}[ -](?:(\d\.\d{1,3}\.\d{1,3})\s+)?(.*)$/.exec(r.text);
  return { kind: 'refused', nextHop: r.remote ?? null, code: r.code, status: m?.[1] ?? null, text: oneLine(m?.[2] ?? r.text, 200) };
}
