/**
 * What rules may do with the store (`ctx.store` in the SDK), checked argument by argument:
 * a rule reaches the store only through here, whichever thread it runs in.
 */
import type { BlacklistStore, ListStore, MailboxDirectory, WatchlistStore } from './ports.js';

// TODO(main): import from sdk/rule.ts
export const STORE_OPS = ['hit', 'count', 'blacklisted', 'listHas', 'listValues', 'listAdd'] as const;
export type StoreOp = (typeof STORE_OPS)[number];

/** The part of the store rules reach. */
export type RuleStoreTarget = WatchlistStore & Pick<BlacklistStore, 'blacklistGet'> & ListStore & Pick<MailboxDirectory, 'mailbox' | 'isLocalDomain'>;

/** A store operation as a rule asks for it; the result is JSON-able. */
export type StoreCall = (op: string, args: unknown[], now: number) => unknown;

type Op = (store: RuleStoreTarget, args: unknown[], now: number) => unknown;

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

/** One entry per store operation: a missing or misspelled one does not compile. */
const OPS: { [K in StoreOp]: Op } = {
  hit: (store, args, now) => store.watchHit(str(args[0], 'key'), seconds(args[1]), now),
  count: (store, args, now) => store.watchCount(str(args[0], 'key'), seconds(args[1]), now),
  blacklisted: (store, args, now) => {
    const e = store.blacklistGet(str(args[0], 'ip', 64), now);
    return e ? { reason: e.reason, rule: e.rule, expires: e.expires } : null;
  },
  listHas: (store, args) => store.listHas(str(args[0], 'list', 64), str(args[1], 'value', 1000)),
  listValues: (store, args) => store.listValues(str(args[0], 'list', 64)),
  listAdd: (store, args) => {
    store.listAdd(str(args[0], 'list', 64), str(args[1], 'value', 1000));
    return null;
  },
};

// TODO(main): delete once the host puts mailbox and local-domain facts into events (they leave
// the rule store); the rules on this branch still ask for them.
const LEGACY_OPS: Record<'mailbox' | 'localDomain', Op> = {
  mailbox: (store, args) => store.mailbox(str(args[0], 'address', 320)),
  localDomain: (store, args) => store.isLocalDomain(str(args[0], 'domain', 253)),
};

const BY_NAME = new Map<string, Op>(Object.entries({ ...OPS, ...LEGACY_OPS }));

/** Runs one rule store operation against `store`; throws TypeError on bad arguments. */
export function storeAccess(store: RuleStoreTarget): StoreCall {
  return (op, args, now) => {
    const run = BY_NAME.get(op);
    if (!run) throw new TypeError(`unknown store operation ${JSON.stringify(op)}`);
    return run(store, args, now);
  };
}
