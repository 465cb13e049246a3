/**
 * The admin API (JSON over the admin listener), smtpf's admin commands over HTTP:
 *
 *   GET    /api/sessions            CONN: the live sessions
 *   POST   /api/sessions/kill?id=   KILL: end one with 421
 *   GET    /api/stats               STAT WINDOW (per minute, 60) and STAT HOURLY (24), top refused clients
 *   GET    /api/routes              per recipient domain and day: accepted, refused, KB (31 days)
 *   GET    /api/blacklist           the blacklist
 *   POST   /api/blacklist?ip=&ttl=&reason=   add (or extend) an entry
 *   DELETE /api/blacklist?ip=       remove one; ?all=1 empties it (SmtpEvt's reset)
 *   GET    /api/rules               the rule set: version, each rule's priority, action, options; last reload error
 *   GET    /api/shadow              what shadow rules would have refused, with samples
 *   GET    /api/queue               messages waiting in the spool and in quarantine
 *
 * A request that changes something must carry `X-Portcullis-Admin: 1`: a browser sends
 * no custom header across origins without a CORS preflight (which we never grant), so a
 * web page the admin happens to visit cannot kill sessions on the loopback listener.
 */
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import type { LiveSession } from '../smtp/server.js';
import type { ShadowReport } from '../pipeline/shadow.js';
import type { RuleSet } from '../pipeline/ruleset.js';
import type { ReloadStatus } from '../reload.js';
import type { TrafficStats } from '../smtp/traffic.js';
import type { BlacklistStore } from '../store/ports.js';
import { RULE_LIMITS } from '../../sdk/index.js';
import type { AdminResponse, Routes } from './server.js';

export interface AdminApiDeps {
  sessions: { liveSessions(): LiveSession[]; kill(id: string): boolean };
  stats: TrafficStats;
  shadow: ShadowReport;
  blacklist: Pick<BlacklistStore, 'blacklistList' | 'blacklistAdd' | 'blacklistRemove' | 'blacklistClear'>;
  /** The rule set new sessions get. */
  rules: () => RuleSet;
  status: () => ReloadStatus;
  queue: () => Promise<{ spool: number; quarantine: number }>;
}

/** The header a changing request must carry (see above). */
export const ADMIN_HEADER = 'x-portcullis-admin';

const json = (status: number, value: unknown): AdminResponse => ({ status, contentType: 'application/json; charset=utf-8', body: `${JSON.stringify(value)}\n` });
const problem = (status: number, error: string) => json(status, { error });
const query = (req: IncomingMessage) => new URL(req.url ?? '/', 'http://admin').searchParams;

/** A changing request without the header gets 403 and does nothing. */
function changing(handle: (req: IncomingMessage) => AdminResponse | Promise<AdminResponse>) {
  return async (req: IncomingMessage): Promise<AdminResponse> =>
    req.headers[ADMIN_HEADER] === '1' ? handle(req) : problem(403, `send the header X-Portcullis-Admin: 1 with a request that changes something`);
}

export function apiRoutes(d: AdminApiDeps): Routes {
  return {
    'GET /api/sessions': { access: 'token', handle: async () => json(200, d.sessions.liveSessions()) },
    'POST /api/sessions/kill': {
      access: 'token',
      handle: changing((req) => {
        const id = query(req).get('id') ?? '';
        return d.sessions.kill(id) ? json(200, { killed: id }) : problem(404, `no session ${JSON.stringify(id)}`);
      }),
    },
    'GET /api/stats': { access: 'token', handle: async () => json(200, { window: d.stats.window(), hourly: d.stats.hourly(), topRefused: d.stats.topRefused() }) },
    'GET /api/routes': { access: 'token', handle: async () => json(200, d.stats.routeDays()) },
    'GET /api/blacklist': {
      access: 'token',
      handle: async () => json(200, d.blacklist.blacklistList(Date.now()).sort((a, b) => a.expires - b.expires).map((e) => ({ ...e, expires: new Date(e.expires).toISOString() }))),
    },
    'POST /api/blacklist': {
      access: 'token',
      handle: changing((req) => {
        const q = query(req);
        const ip = q.get('ip') ?? '';
        const ttl = Number(q.get('ttl') ?? 3600);
        if (!isIP(ip)) return problem(400, `ip: ${JSON.stringify(ip)} is not an IP address`);
        if (!Number.isInteger(ttl) || ttl <= 0 || ttl > RULE_LIMITS.maxSeconds) return problem(400, `ttl: seconds from 1 to ${RULE_LIMITS.maxSeconds}`);
        const e = d.blacklist.blacklistAdd(ip, ttl, q.get('reason') || 'added by the administrator', 'admin', Date.now());
        return json(200, { ...e, expires: new Date(e.expires).toISOString() });
      }),
    },
    'DELETE /api/blacklist': {
      access: 'token',
      handle: changing((req) => {
        const q = query(req);
        if (q.get('all') === '1') {
          d.blacklist.blacklistClear();
          return json(200, { emptied: true });
        }
        const ip = q.get('ip') ?? '';
        return d.blacklist.blacklistRemove(ip) ? json(200, { removed: ip }) : problem(404, `${ip} is not blacklisted`);
      }),
    },
    'GET /api/rules': {
      access: 'token',
      handle: async () => {
        const rs = d.rules();
        const st = d.status();
        return json(200, {
          version: rs.version,
          rules: rs.rules.map((r) => ({ name: r.name, description: r.meta.description ?? null, priority: r.priority, action: r.action, options: r.options, file: r.file })),
          off: rs.off.map((r) => r.name),
          warnings: rs.warnings,
          reloads: st.reloads, lastReload: st.lastReload, lastError: st.lastError, restartNeeded: st.restartNeeded,
        });
      },
    },
    'GET /api/shadow': { access: 'token', handle: async () => json(200, d.shadow.report()) },
    'GET /api/queue': { access: 'token', handle: async () => json(200, await d.queue()) },
  };
}
