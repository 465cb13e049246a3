/**
 * The Redis store's server-side steps (redis.ts), each one atomic: Lua runs alone in
 * Redis, so two hosts writing the same key at once cannot interleave their reads and
 * writes. Each touches one key (KEYS[1]), so it also runs on Redis Cluster.
 */
import { createHash } from 'node:crypto';

/** A rule's entry (ports.ts `blacklist-extend`): kept when the live one expires later; a live one keeps its created. */
const EXTEND = `
local old = redis.call('HMGET', KEYS[1], 'expires', 'created')
local created = ARGV[3]
if old[1] then
  if tonumber(old[1]) >= tonumber(ARGV[4]) then return 0 end
  if tonumber(old[1]) > tonumber(ARGV[3]) then created = old[2] end
end
redis.call('HSET', KEYS[1], 'reason', ARGV[1], 'rule', ARGV[2], 'created', created, 'expires', ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
return 1`;

/** The admin's entry: replaces whatever is there. */
const PUT = `
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'reason', ARGV[1], 'rule', ARGV[2], 'created', ARGV[3], 'expires', ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
return 1`;

/** One watchlist hit at ARGV[1] (ms) named ARGV[2]; hits past the window ARGV[3] go, and the key lives as long as its last hit counts. */
const HIT = `
local at = tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], at, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', at - tonumber(ARGV[3]))
local until_ = at + tonumber(ARGV[3])
if redis.call('PEXPIRETIME', KEYS[1]) < until_ then redis.call('PEXPIREAT', KEYS[1], until_) end
return redis.call('ZCARD', KEYS[1])`;

/** A value added to a named list after the others (the access map's order is its precedence). */
const LIST_ADD = `
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local rank = 1
if top[2] then rank = tonumber(top[2]) + 1 end
redis.call('ZADD', KEYS[1], rank, ARGV[1])
return 1`;

export interface Script {
  lua: string;
  sha: string;
}
const script = (lua: string): Script => ({ lua, sha: createHash('sha1').update(lua).digest('hex') });
/** Sent by EVALSHA; loaded at open and again when Redis lost them. */
export const SCRIPTS = { extend: script(EXTEND), put: script(PUT), hit: script(HIT), listAdd: script(LIST_ADD) };
