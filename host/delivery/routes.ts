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

  /** Sends `message` to each recipient's next hop (all at once) or into the mailbox folder: one result per recipient. */
  async send(spool: Spool, env: SpoolEnvelope, rcpts: string[], message: Buffer): Promise<RcptResult[]> {
    const groups = await Promise.all([...this.group(rcpts)].map(async ([hop, list]) =>
      hop ? hop.send(env.mailFrom, list, message) : deliverLocally(spool, env, list, message)));
    return groups.flat();
  }

  close(): void {
    for (const h of this.all) h.close();
  }
}
