/**
 * Which next hop takes which recipient: `delivery.routes` by the recipient's domain (as
 * smtpf's routes), else `delivery.nextHop`, else none (local delivery into the mailbox
 * folder). One connection pool per distinct next hop.
 */
import type { DeliveryConfig, NextHopConfig } from '../config/config.js';
import { domainOf } from '../net.js';
import type { Spool, SpoolEnvelope } from '../spool/spool.js';
import { deliverLocally } from './local.js';
import { NextHop, type RcptResult } from './nexthop.js';

/** The next hop's settings for a recipient (its domain's route, else `nextHop`); null: local delivery. */
export function hopConfigFor(config: DeliveryConfig, rcpt: string): NextHopConfig | null {
  return config.routes[domainOf(rcpt)] ?? config.nextHop ?? null;
}

export class Routes {
  private readonly byDomain = new Map<string, NextHop>();
  private readonly fallback: NextHop | null;
  private readonly all: NextHop[] = [];

  constructor(config: DeliveryConfig, heloName: string) {
    // Routes with the same settings share one pool.
    const pools = new Map<string, NextHop>();
    const hop = (c: NextHopConfig): NextHop => {
      const key = JSON.stringify(c);
      let h = pools.get(key);
      if (!h) pools.set(key, (h = new NextHop(c, heloName)));
      return h;
    };
    for (const [domain, c] of Object.entries(config.routes)) this.byDomain.set(domain, hop(c));
    this.fallback = config.nextHop ? hop(config.nextHop) : null;
    this.all = [...pools.values()];
  }

  /** The next hop for a recipient; null: deliver locally. */
  hopFor(rcpt: string): NextHop | null {
    // The same choice as hopConfigFor, by pool.
    return this.byDomain.get(domainOf(rcpt)) ?? this.fallback;
  }

  /** Recipients grouped by next hop (null: local), in the order first seen. */
  group(rcpts: string[]): Map<NextHop | null, string[]> {
    const out = new Map<NextHop | null, string[]>();
    for (const r of rcpts) {
      const h = this.hopFor(r);
      const list = out.get(h);
      if (list) list.push(r);
      else out.set(h, [r]);
    }
    return out;
  }

  /**
   * Sends `message` to each recipient's next hop (all at once) or into the mailbox folder:
   * one result per recipient. Recipients with different DSN NOTIFY values go in separate
   * transactions: NOTIFY is per recipient, nodemailer sends one per message.
   */
  async send(spool: Spool, env: SpoolEnvelope, rcpts: string[], message: Buffer): Promise<RcptResult[]> {
    const sends: Promise<RcptResult[]>[] = [];
    for (const [hop, list] of this.group(rcpts)) {
      if (!hop) sends.push(deliverLocally(spool, env, list, message));
      else for (const same of byNotify(list, env.dsn?.notify)) sends.push(hop.send(env.mailFrom, same, message, env.dsn));
    }
    return (await Promise.all(sends)).flat();
  }

  close(): void {
    for (const h of this.all) h.close();
  }
}

/** Recipients split by their NOTIFY value (one list when none has any). */
function byNotify(rcpts: string[], notify: Record<string, string> | undefined): string[][] {
  if (!notify) return [rcpts];
  const out = new Map<string, string[]>();
  for (const r of rcpts) {
    const k = notify[r] ?? '';
    out.set(k, [...(out.get(k) ?? []), r]);
  }
  return [...out.values()];
}
