/**
 * What rules may do with the store (`ctx.store` in the SDK), checked argument by argument:
 * a rule reaches the store only through here, whichever thread it runs in.
 */
import type { MemoryStore } from './store.js';

export type StoreOp = 'hit' | 'count' | 'blacklisted' | 'mailbox' | 'localDomain' | 'listHas' | 'listValues' | 'listAdd';

/** A store operation as a rule asks for it; the result is JSON-able. */
export type StoreCall = (op: string, args: unknown[], now: number) => unknown;

const MAX_KEY = 512;
const MAX_WINDOW = 30 * 24 * 3600;

function str(v: unknown, what: string, max = MAX_KEY): string {
  if (typeof v !== 'string' || !v || v.length > max) throw new TypeError(`${what} must be a non-empty string of at most ${max} characters`);
  return v;
}

function seconds(v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > MAX_WINDOW) throw new TypeError(`windowSeconds must be a number from 1 to ${MAX_WINDOW}`);
  return v;
}

/** Runs one rule store operation against `store`; throws TypeError on bad arguments. */
export function storeAccess(store: MemoryStore): StoreCall {
  return (op, args, now) => {
    switch (op as StoreOp) {
      case 'hit':
        return store.watchHit(str(args[0], 'key'), seconds(args[1]), now);
      case 'count':
        return store.watchCount(str(args[0], 'key'), seconds(args[1]), now);
      case 'blacklisted': {
        const e = store.blacklistGet(str(args[0], 'ip', 64), now);
        return e ? { reason: e.reason, rule: e.rule, expires: e.expires } : null;
      }
      case 'mailbox':
        return store.mailbox(str(args[0], 'address', 320));
      case 'localDomain':
        return store.isLocalDomain(str(args[0], 'domain', 253));
      case 'listHas':
        return store.listHas(str(args[0], 'list', 64), str(args[1], 'value', 1000));
      case 'listValues':
        return store.listValues(str(args[0], 'list', 64));
      case 'listAdd':
        store.listAdd(str(args[0], 'list', 64), str(args[1], 'value', 1000));
        return null;
      default:
        throw new TypeError(`unknown store operation ${JSON.stringify(op)}`);
    }
  };
}
