/**
 * How a cluster's primary combines its workers' answers (host/cluster/admin.ts) and
 * counters (metrics.ts `combineSample`): workers built from plain data, answering as
 * their admin routes do.
 */
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { describe, it } from 'node:test';
import type { AdminResponse, Routes } from '../host/admin/server.js';
import { clusterRoutes, type WorkerLink } from '../host/cluster/admin.js';
import { combineSample } from '../host/metrics.js';

const json = (status: number, value: unknown): AdminResponse => ({ status, contentType: 'application/json; charset=utf-8', body: `${JSON.stringify(value)}\n` });

/** A worker whose routes answer from `answers` (route → response). */
function worker(slot: number, answers: Record<string, AdminResponse>): WorkerLink {
  return {
    slot, pid: 1000 + slot,
    ask: (async (a: { t: string; route?: string }) => {
      if (a.t !== 'admin') return [];
      const r = answers[a.route!];
      if (!r) throw new Error(`no route ${a.route}`);
      return r;
    }) as WorkerLink['ask'],
  };
}

const call = (routes: Routes, route: keyof Routes, url = '/') => routes[route]!.handle({ url, headers: { 'x-portcullis-admin': '1' } } as unknown as IncomingMessage);
const slot = (start: string, n: number, rule: string) => ({ start, connections: n, accepted: n, refused: 1, abandoned: 0, rcptAccepted: n, rcptRefused: 0, bytes: 10 * n, refusedBy: { [rule]: 1 }, refusedIp: { '192.0.2.1': 1 } });

describe('the primary\'s admin answers', () => {
  it('lists the sessions of every worker, each with its worker\'s slot and pid, oldest first', async () => {
    const s = (id: string, since: string) => ({ id, ip: '192.0.2.1', ptr: null, helo: null, user: null, tls: false, since, transactions: 0, mailFrom: null, rcpts: 0, ruleSet: 1 });
    const routes = clusterRoutes(() => [
      worker(1, { 'GET /api/sessions': json(200, [s('b', '2026-12-01T00:00:02Z')]) }),
      worker(2, { 'GET /api/sessions': json(200, [s('a', '2026-12-01T00:00:01Z')]) }),
    ]);
    const r = await call(routes, 'GET /api/sessions');
    assert.deepEqual(JSON.parse(r.body).map((x: { id: string; worker: unknown }) => [x.id, x.worker]), [['a', { slot: 2, pid: 1002 }], ['b', { slot: 1, pid: 1001 }]]);
  });

  it('a kill is answered by the worker that held the session; 404 when none did', async () => {
    const routes = (owner: boolean) => clusterRoutes(() => [
      worker(1, { 'POST /api/sessions/kill': json(404, { error: 'no session "x"' }) }),
      worker(2, { 'POST /api/sessions/kill': owner ? json(200, { killed: 'x' }) : json(404, { error: 'no session "x"' }) }),
    ]);
    assert.equal((await call(routes(true), 'POST /api/sessions/kill', '/api/sessions/kill?id=x')).status, 200);
    const none = await call(routes(false), 'POST /api/sessions/kill', '/api/sessions/kill?id=x');
    assert.equal(none.status, 404);
    assert.deepEqual(JSON.parse(none.body), { error: 'no session "x"' });
  });

  it('sums the traffic windows minute by minute, refusals by rule and by client included', async () => {
    const routes = clusterRoutes(() => [
      worker(1, { 'GET /api/stats': json(200, { window: [slot('T1', 2, 'dnsbl')], hourly: [], topRefused: [{ ip: '192.0.2.1', refusals: 1 }] }) }),
      worker(2, { 'GET /api/stats': json(200, { window: [slot('T1', 3, 'greylist'), slot('T2', 1, 'dnsbl')], hourly: [], topRefused: [{ ip: '192.0.2.1', refusals: 2 }] }) }),
    ]);
    const r = JSON.parse((await call(routes, 'GET /api/stats')).body);
    assert.deepEqual(r.window[0], { start: 'T1', connections: 5, accepted: 5, refused: 2, abandoned: 0, rcptAccepted: 5, rcptRefused: 0, bytes: 50, refusedBy: { dnsbl: 1, greylist: 1 }, refusedIp: { '192.0.2.1': 2 } });
    assert.equal(r.window[1].start, 'T2');
    assert.deepEqual(r.topRefused, [{ ip: '192.0.2.1', refusals: 3 }]);
  });

  it('adds up the queues of every worker\'s spool', async () => {
    const routes = clusterRoutes(() => [
      worker(1, { 'GET /api/queue': json(200, { spool: 2, quarantine: 1 }) }),
      worker(2, { 'GET /api/queue': json(200, { spool: 3, quarantine: 0 }) }),
    ]);
    assert.deepEqual(JSON.parse((await call(routes, 'GET /api/queue')).body), { spool: 5, quarantine: 1 });
  });

  it('answers 503 when no worker serves', async () => {
    const r = await call(clusterRoutes(() => []), 'GET /api/sessions');
    assert.equal(r.status, 503);
    assert.deepEqual(JSON.parse(r.body), { error: 'no worker process is serving right now' });
  });
});

describe('combineSample: one counter over the workers', () => {
  it('sums counts, takes the lowest rule set version and the largest copy of the shared store', () => {
    assert.equal(combineSample('verdicts_total{rule="dnsbl",phase="connect",action="reject"}', [2, 3]), 5);
    assert.equal(combineSample('ruleset_version', [3, 2]), 2);
    assert.equal(combineSample('store_entries{kind="blacklist"}', [4, 4]), 4);
    assert.equal(combineSample('sessions_open', [1, 2]), 3);
  });
});
