/** The host's own DNS deadlines (withDeadline per query, checkSpf per SPF check), with timers the test fires by hand: no clock involved. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate as turn } from 'node:timers/promises';
import { tableBackend, withDeadline, type DeadlineTimers, type DnsBackend } from '../host/dns/backend.js';
import { checkSpf } from '../host/dns/spf.js';

/** Timers that never fire by themselves: `fire()` runs the ones still armed. */
class FakeTimers implements DeadlineTimers {
  private next = 0;
  readonly armed = new Map<number, { fire: () => void; ms: number }>();
  setTimeout(fire: () => void, ms: number): number {
    this.armed.set(++this.next, { fire, ms });
    return this.next;
  }
  clearTimeout(timer: unknown): void {
    this.armed.delete(timer as number);
  }
  fire(): void {
    const due = [...this.armed.values()];
    this.armed.clear();
    for (const t of due) t.fire();
  }
}

/** A resolver that never answers until told to: each query's settle functions, by name. */
function silentBackend() {
  const waiting = new Map<string, { resolve: (v: string[]) => void; reject: (e: Error) => void }>();
  const query = (name: string) => new Promise<string[]>((resolve, reject) => waiting.set(name, { resolve, reject }));
  const backend: DnsBackend = { a: query, aaaa: query, txt: query, mx: query, ptr: query, ns: query };
  return { backend, waiting };
}

/** What a promise has done so far: 'pending', or its value / error code. */
function track<T>(p: Promise<T>): { state: () => string } {
  let state = 'pending';
  p.then((v) => { state = `resolved ${JSON.stringify(v)}`; }, (e: { code?: string }) => { state = `rejected ${e.code}`; });
  return { state: () => state };
}

describe('DNS deadline (withDeadline)', () => {
  it('a query the resolver never answers rejects with ETIMEOUT exactly when the deadline timer fires', async () => {
    const timers = new FakeTimers();
    const { backend } = silentBackend();
    const bounded = withDeadline(backend, 2000, timers);
    for (const type of ['a', 'aaaa', 'txt', 'mx', 'ptr'] as const) {
      const q = bounded[type]('2.0.0.127.zen.example');
      const t = track(q);
      assert.deepEqual([...timers.armed.values()].map((x) => x.ms), [2000], type);
      await turn();
      assert.equal(t.state(), 'pending', `${type}: nothing settles before the timer fires`);
      timers.fire();
      await assert.rejects(q, (e: Error & { code?: string }) => e.code === 'ETIMEOUT' && e.message.includes('2.0.0.127.zen.example'));
    }
  });

  it('an answer before the deadline comes through unchanged and disarms the timer', async () => {
    const timers = new FakeTimers();
    const bounded = withDeadline(tableBackend({ '2.0.0.127.zen.example': { A: ['127.0.0.2'], TXT: ['listed'] } }), 2000, timers);
    assert.deepEqual(await bounded.a('2.0.0.127.zen.example'), ['127.0.0.2']);
    assert.deepEqual(await bounded.txt('2.0.0.127.zen.example'), ['listed']);
    assert.equal(timers.armed.size, 0);
  });

  it("a resolver error before the deadline is passed on with its own code (NXDOMAIN stays ENOTFOUND)", async () => {
    const timers = new FakeTimers();
    const bounded = withDeadline(tableBackend({ 'broken.example': 'ESERVFAIL' }), 2000, timers);
    await assert.rejects(bounded.a('nothing.example'), { code: 'ENOTFOUND' });
    await assert.rejects(bounded.mx('broken.example'), { code: 'ESERVFAIL' });
    assert.equal(timers.armed.size, 0);
  });

  it('an answer arriving after the deadline is dropped: the query stays timed out', async () => {
    const timers = new FakeTimers();
    const { backend, waiting } = silentBackend();
    const bounded = withDeadline(backend, 300, timers);
    const late = bounded.a('late.example');
    const failedLate = bounded.a('fails-late.example');
    timers.fire();
    await assert.rejects(late, { code: 'ETIMEOUT' });
    await assert.rejects(failedLate, { code: 'ETIMEOUT' });
    waiting.get('late.example')!.resolve(['127.0.0.2']);
    waiting.get('fails-late.example')!.reject(Object.assign(new Error('queryA ETIMEOUT'), { code: 'ETIMEOUT' })); // no unhandled rejection
    await turn();
    await assert.rejects(late, { code: 'ETIMEOUT' });
  });
});

describe('SPF deadline (checkSpf)', () => {
  it('a check not done when the deadline fires is a temperror, and no query starts after it', async () => {
    const timers = new FakeTimers();
    const { backend, waiting } = silentBackend();
    const check = checkSpf(backend, { ip: '192.0.2.9', sender: 'news@slow.example', helo: 'mx.slow.example' }, 2000, timers);
    const t = track(check);
    for (let i = 0; i < 500 && !waiting.has('slow.example'); i++) await turn(); // mailauth loads, then asks for the TXT record
    assert.ok(waiting.has('slow.example'), 'the TXT query was sent');
    assert.deepEqual([...timers.armed.values()].map((x) => x.ms), [2000], 'one deadline for the whole check');
    assert.equal(t.state(), 'pending');
    timers.fire();
    assert.deepEqual(await check, { answer: { result: 'temperror', domain: 'slow.example', identity: 'mailfrom' }, why: 'not done within 2000 ms', code: 'ETIMEOUT', personal: false });
    // The late answer names another domain to look up: the check has given up, so it is never asked.
    waiting.get('slow.example')!.resolve(['v=spf1 include:more.slow.example -all']);
    for (let i = 0; i < 5; i++) await turn();
    assert.deepEqual([...waiting.keys()], ['slow.example']);
  });

  it('a check done in time disarms its deadline', async () => {
    const timers = new FakeTimers();
    const o = await checkSpf(tableBackend({ 'partner.example': { TXT: ['v=spf1 ip4:192.0.2.7 -all'] } }), { ip: '192.0.2.7', sender: 'a@partner.example', helo: null }, 2000, timers);
    assert.equal(o.answer.result, 'pass');
    assert.equal(timers.armed.size, 0);
  });
});
