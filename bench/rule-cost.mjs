// The cost of each built-in rule on its own: the host with only that rule turned on,
// against the host with none, under one load (many messages per connection, 1 KB).
// Options that would refuse the load generator's mail (it sends from one address, with
// no SIZE, and never retries) are opened up: this measures what a rule costs to run,
// not what it refuses.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { measureLoad } from './lib.mjs';

/** Options under which a rule lets smtp-source's mail through (content-filter: patterns to run, none matching). */
const PASSABLE = {
  'concurrent-connections': { maxSessions: 1000 },
  'connection-rate': { maxConnections: 1_000_000 },
  // Its whole point is to wait: 1 ms per reply measures the timers, not a second's sleep.
  'slow-reply': { delayMs: 1 },
  access: { entries: ['Connect:192.0.2.0/24 REJECT', 'From:spammer.example REJECT', 'To:closed@localhost REJECT'] },
  'header-conformance': { action: 'tag' },
  'content-filter': { patterns: ['^From: Friend@public\\.com', 'name\\=".*\\.vbs"', '\\bviagra\\b', 'you (have )?won'] }, // with the MIME parse (decoded)
};
/**
 * Rules this load cannot pass at all: greylisting (smtp-source never retries), require-size
 * (it declares no SIZE); and those that need a server the bench does not start (spamd, a
 * next hop to call ahead).
 */
const SKIPPED = new Set(['greylist', 'require-size', 'spamassassin', 'call-ahead']);

/**
 * `start(settings)` starts a host with those `rules.settings` and the built-in rules;
 * returns rows: rule, msgs/s, server CPU per message, and the cost against no rules.
 */
export async function ruleCost(root, start, { messages, rounds }) {
  const names = readdirSync(join(root, 'rules')).filter((f) => f.endsWith('.ts')).map((f) => f.slice(0, -3)).filter((n) => !SKIPPED.has(n));
  const only = (name) => Object.fromEntries(names.map((n) => [n, n === name ? { enabled: true, ...(PASSABLE[n] ? { options: PASSABLE[n] } : {}) } : { enabled: false }]));
  const measure = async (settings) => {
    const runs = [];
    for (let i = 0; i < rounds; i++) {
      const r = await measureLoad(() => start(settings), { messages, perConnection: true, sizeBytes: 1024 });
      runs.push({ rate: r.rate, cpuMs: (r.cores / r.rate) * 1000 }); // CPU seconds per message = cores / (msgs/s)
    }
    const med = (k) => [...runs.map((r) => r[k])].sort((a, b) => a - b)[Math.floor(runs.length / 2)];
    return { rate: med('rate'), cpuMs: med('cpuMs') };
  };
  const none = await measure(Object.fromEntries(names.map((n) => [n, { enabled: false }])));
  const rows = [{ rule: '(none)', 'msgs/s': Math.round(none.rate), 'server CPU ms/msg': none.cpuMs.toFixed(2), cost: '' }];
  for (const name of names) {
    // A rule that refuses the load (smtp-source stops at its first 5xx) is named, not fatal.
    const r = await measure(only(name)).catch((e) => ({ error: e.message.split('\n')[0] }));
    if ('error' in r) rows.push({ rule: name, 'msgs/s': '', 'server CPU ms/msg': '', cost: `refused the load: ${r.error.slice(0, 80)}` });
    else rows.push({ rule: name, 'msgs/s': Math.round(r.rate), 'server CPU ms/msg': r.cpuMs.toFixed(2), cost: `${Math.round((1 - r.rate / none.rate) * 100)} %` });
  }
  return rows;
}
