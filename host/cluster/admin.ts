/**
 * The admin listener of a cluster's primary: every API route is asked of each worker (its
 * own routes, admin/api.ts, answer) and the answers are combined here, one way per route.
 * Sessions are listed with the worker that serves them; a kill goes to every worker and
 * the one that holds the session answers; a blacklist change goes to every worker, so it
 * is in force on all of them when the request returns (each also writes it to the shared
 * store, where the same entry twice is harmless); traffic counts and queue sizes are
 * summed; /metrics sums each sample over the workers (prom-client's AggregatorRegistry).
 */
import type { IncomingMessage } from 'node:http';
import { AggregatorRegistry } from 'prom-client';
import { DASHBOARD_HTML } from '../admin/dashboard.js';
import type { AdminResponse, Route, Routes } from '../admin/server.js';
import type { LiveSession } from '../smtp/server.js';
import type { Slot } from '../smtp/traffic.js';
import type { Answers, PrimaryAsk } from './ipc.js';

/** A live worker, as the primary's admin routes reach it. */
export interface WorkerLink {
  slot: number;
  pid: number;
  ask<A extends PrimaryAsk>(a: A): Promise<Answers[A['t']]>;
}

type Answer = { w: WorkerLink; r: AdminResponse };
type Merge = (answers: Answer[]) => AdminResponse;

const json = (status: number, value: unknown): AdminResponse => ({ status, contentType: 'application/json; charset=utf-8', body: `${JSON.stringify(value)}\n` });
const parsed = <T>(a: Answer): T => JSON.parse(a.r.body) as T;
const ok = (a: Answer) => a.r.status >= 200 && a.r.status < 300;

/** The first worker's answer (what every worker answers alike: the shared store, the rule set). */
const first: Merge = (as) => as[0]!.r;
/** The answer of a worker that did it, else the first refusal (a kill: 404 from all but the owner). */
const anyOk: Merge = (as) => (as.find(ok) ?? as[0]!).r;

function sessions(as: Answer[]): AdminResponse {
  const all = as.filter(ok).flatMap((a) => parsed<LiveSession[]>(a).map((s): LiveSession => ({ ...s, worker: { slot: a.w.slot, pid: a.w.pid } })));
  return json(200, all.sort((x, y) => x.since.localeCompare(y.since)));
}

/** Adds `s`'s counts into `t` (numbers, and counts by rule or by address). */
function addCounts(t: Slot, s: Slot): void {
  for (const [k, v] of Object.entries(s)) {
    const into = t as unknown as Record<string, unknown>;
    if (typeof v === 'number') into[k] = (into[k] as number) + v;
    else if (typeof v === 'object' && v !== null) {
      const m = into[k] as Record<string, number>;
      for (const [key, n] of Object.entries(v as Record<string, number>)) m[key] = (m[key] ?? 0) + n;
    }
  }
}

/** Sums the counts of slots with the same start (every worker keeps the same minute and hour grid). */
function sumSlots(lists: Slot[][]): Slot[] {
  const by = new Map<string, Slot>();
  for (const list of lists) for (const s of list) {
    const t = by.get(s.start);
    if (t) addCounts(t, s);
    else by.set(s.start, { ...s, refusedBy: { ...s.refusedBy }, refusedIp: { ...s.refusedIp } });
  }
  return [...by.values()].sort((a, b) => a.start.localeCompare(b.start));
}

type Refusals = { ip: string; refusals: number }[];

function stats(as: Answer[]): AdminResponse {
  const each = as.filter(ok).map((a) => parsed<{ window: Slot[]; hourly: Slot[]; topRefused: Refusals }>(a));
  const top = new Map<string, number>();
  for (const e of each) for (const t of e.topRefused) top.set(t.ip, (top.get(t.ip) ?? 0) + t.refusals);
  return json(200, {
    window: sumSlots(each.map((e) => e.window)),
    hourly: sumSlots(each.map((e) => e.hourly)),
    topRefused: [...top].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, Math.max(0, ...each.map((e) => e.topRefused.length))).map(([ip, refusals]) => ({ ip, refusals })),
  });
}

function queue(as: Answer[]): AdminResponse {
  const each = as.filter(ok).map((a) => parsed<{ spool: number; quarantine: number }>(a));
  return json(200, { spool: each.reduce((n, e) => n + e.spool, 0), quarantine: each.reduce((n, e) => n + e.quarantine, 0) });
}

/** How each API route's answers combine (the routes of admin/api.ts). */
const API: Record<string, { access: Route['access']; merge: Merge }> = {
  'GET /api/sessions': { access: 'token', merge: sessions },
  'POST /api/sessions/kill': { access: 'token', merge: anyOk },
  'GET /api/stats': { access: 'token', merge: stats },
  'GET /api/routes': { access: 'token', merge: first },
  'GET /api/blacklist': { access: 'token', merge: first },
  'POST /api/blacklist': { access: 'token', merge: anyOk },
  'DELETE /api/blacklist': { access: 'token', merge: anyOk },
  'GET /api/rules': { access: 'token', merge: first },
  'GET /api/shadow': { access: 'token', merge: first },
  'GET /api/queue': { access: 'token', merge: queue },
};

/** The primary's routes over `workers()` (those serving now). */
export function clusterRoutes(workers: () => WorkerLink[]): Routes {
  const routes: Record<string, Route> = {
    'GET /metrics': {
      access: 'scrape',
      handle: async () => {
        const each = await Promise.all(workers().map((w) => w.ask({ t: 'metrics' }).catch(() => [])));
        const reg = AggregatorRegistry.aggregate(each);
        return { status: 200, contentType: reg.contentType, body: await reg.metrics() };
      },
    },
    'GET /': { access: 'page', handle: async () => ({ status: 200, contentType: 'text/html; charset=utf-8', body: DASHBOARD_HTML }) },
  };
  for (const [route, { access, merge }] of Object.entries(API)) {
    routes[route] = {
      access,
      handle: async (req: IncomingMessage) => {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
        const answers = await Promise.all(workers().map(async (w): Promise<Answer | null> => {
          try {
            return { w, r: await w.ask({ t: 'admin', route, url: req.url ?? '/', headers }) };
          } catch {
            return null; // a worker that died meanwhile: the others answer
          }
        }));
        const got = answers.filter((a): a is Answer => a !== null);
        return got.length ? merge(got) : json(503, { error: 'no worker process is serving right now' });
      },
    };
  }
  return routes as Routes;
}
