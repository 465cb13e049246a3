/**
 * What rules may do with the store (`ctx.store` in the SDK), checked argument by argument:
 * a rule reaches the store only through here, whichever thread it runs in. The operations
 * are the SDK's `STORE_OPS`, one entry each, typed by the SDK's `RuleStore`: a missing,
 * extra or misspelled operation, or a wrong result type, does not compile.
 */
import { RULE_LIMITS, STORE_OPS, type RuleStore, type StoreOp } from '../../sdk/index.js';
import { CACHE_PREFIX, ruleView, type BlacklistStore, type ListStore, type TtlCache, type WatchlistStore } from './ports.js';

/** The part of the store rules reach (they add to lists, never remove: that is the administrator's). */
export type RuleStoreTarget = WatchlistStore & Pick<BlacklistStore, 'blacklistGet'> & Pick<ListStore, 'listHas' | 'listValues' | 'listAdd'> & Pick<TtlCache, 'cacheGet' | 'cacheSet'>;

/** A store operation as a rule asks for it; the result is JSON-able. */
export type StoreCall = (op: string, args: unknown[], now: number) => unknown;

function str(v: unknown, what: string, max: number): string {
  if (typeof v !== 'string' || !v || v.length > max) throw new TypeError(`${what} must be a non-empty string of at most ${max} characters`);
  return v;
}

function seconds(v: unknown, what: string, max: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > max) throw new TypeError(`${what} must be a number from 1 to ${max}`);
  return v;
}

const window = (v: unknown) => seconds(v, 'windowSeconds', RULE_LIMITS.maxWatchSeconds);
/** Rules' remembered values share the TTL cache with the host's, under their own prefix. */
const REMEMBER_PREFIX = CACHE_PREFIX.rule;

const key = (v: unknown) => str(v, 'key', RULE_LIMITS.storeKey);
const list = (v: unknown) => str(v, 'list', RULE_LIMITS.listName);
const value = (v: unknown) => str(v, 'value', RULE_LIMITS.listValue);

const OPS: { [K in StoreOp]: (store: RuleStoreTarget, args: unknown[], now: number) => ReturnType<RuleStore[K]> } = {
  hit: (store, args, now) => store.watchHit(key(args[0]), window(args[1]), now),
  count: (store, args, now) => store.watchCount(key(args[0]), window(args[1]), now),
  blacklisted: (store, args, now) => {
    const e = store.blacklistGet(str(args[0], 'ip', 64), now);
    return e ? ruleView(e) : null;
  },
  listHas: (store, args) => store.listHas(list(args[0]), value(args[1])),
  listValues: (store, args) => store.listValues(list(args[0])),
  listAdd: (store, args) => store.listAdd(list(args[0]), value(args[1])),
  remember: (store, args, now) => store.cacheSet(REMEMBER_PREFIX + key(args[0]), value(args[1]), seconds(args[2], 'ttlSeconds', RULE_LIMITS.maxSeconds), now),
  recall: (store, args, now) => store.cacheGet(REMEMBER_PREFIX + key(args[0]), now) ?? null,
};

const isOp = (op: string): op is StoreOp => (STORE_OPS as readonly string[]).includes(op);

/** Runs one rule store operation against `store`; throws TypeError on bad arguments. */
export function storeAccess(store: RuleStoreTarget): StoreCall {
  return (op, args, now) => {
    if (!isOp(op)) throw new TypeError(`unknown store operation ${JSON.stringify(op)}`);
    return OPS[op](store, args, now) ?? null;
  };
}
