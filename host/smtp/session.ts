/**
 * What the host keeps per connection and per transaction, and how it becomes the plain
 * JSON events rules receive.
 */
import type { SMTPServerSession } from 'smtp-server';
import type { Envelope, EnvelopeAddress, SessionInfo } from '../../sdk/index.js';
import type { RuleSet } from '../pipeline/ruleset.js';
import { plainIp } from '../net.js';

/** Where an accepted message goes. Stronger dispositions win: quarantine > discard > redirect > deliver. */
export interface Disposition {
  action: 'deliver' | 'redirect' | 'discard' | 'quarantine';
  rule: string | null;
  reason: string | null;
  address?: string;
}

const STRENGTH: Record<Disposition['action'], number> = { deliver: 0, redirect: 1, discard: 2, quarantine: 3 };

export function stronger(a: Disposition, b: Disposition): Disposition {
  return STRENGTH[b.action] > STRENGTH[a.action] ? b : a;
}

export const DELIVER: Disposition = Object.freeze({ action: 'deliver', rule: null, reason: null });

export interface Transaction {
  mail: (EnvelopeAddress & { size: number | null }) | null;
  rcpts: EnvelopeAddress[];
  failedRcpts: number;
  headers: [string, string][];
  disposition: Disposition;
  /** A rule accepted at mail or data: the rest of the transaction skips the rules. */
  whitelisted: boolean;
}

export interface SessionState {
  /** The RuleSet pinned at connect; the session ends on it even if a reload happens. */
  ruleSet: RuleSet;
  /** Client in exemptNetworks: no rule runs. */
  exempt: boolean;
  /** Client in relayNetworks: may send to any domain. */
  relayClient: boolean;
  /** A rule accepted at connect, HELO or AUTH: the rest of the connection skips the rules. */
  whitelisted: boolean;
  submission: boolean;
  helo: SessionInfo['helo'];
  user: string | null;
  transactions: number;
  /** Headers and disposition decided before any transaction (connect, HELO, AUTH). */
  headers: [string, string][];
  disposition: Disposition;
  tx: Transaction;
}

export function newTransaction(state: Pick<SessionState, 'disposition'>): Transaction {
  return { mail: null, rcpts: [], failedRcpts: 0, headers: [], disposition: state.disposition, whitelisted: false };
}

export function sessionInfo(state: SessionState, s: SMTPServerSession): SessionInfo {
  const host = s.clientHostname;
  return {
    id: s.id,
    time: Date.now(),
    client: { ip: plainIp(s.remoteAddress), port: s.remotePort, ptr: host && !host.startsWith('[') ? host : null },
    local: { ip: plainIp(s.localAddress), port: s.localPort, submission: state.submission },
    helo: state.helo,
    tls: s.secure,
    user: state.user,
    transactions: state.transactions,
  };
}

export function envelope(tx: Transaction): Envelope {
  return { mailFrom: tx.mail, rcptTo: tx.rcpts, failedRcpts: tx.failedRcpts };
}

/** ESMTP parameters as a plain string map (upper-case keys; flags map to ''). */
export function argsOf(args: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (args && typeof args === 'object') {
    for (const [k, v] of Object.entries(args)) out[k.toUpperCase()] = v === true ? '' : String(v);
  }
  return out;
}
