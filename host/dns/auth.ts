/**
 * DKIM (RFC 6376), ARC (RFC 8617) and DMARC (RFC 7489) of a received message, through
 * mailauth's verifiers (`dkimVerify`, `arc`, `dmarc`: the parts of its `authenticate()`
 * we need, given the SPF answer the session already has), with every DNS query they make
 * (DKIM and ARC keys, the `_dmarc` policy) sent through our DnsBackend.
 *
 * As for SPF, the whole check is bounded by one deadline (`timeoutMs`, the DNS deadline):
 * a message with many signatures must not hold the final dot for many deadlines. Past
 * it, what is not known is a temperror.
 */
import { randomInt } from 'node:crypto';
import {
  ARC_RESULTS, DKIM_RESULTS, DMARC_POLICIES, DMARC_RESULTS,
  type ArcAnswer, type DkimResult, type DkimSignature, type DmarcAnswer, type DmarcPolicy, type DmarcResult, type SpfAnswer,
} from '../../sdk/index.js';
import { checkDeadline, realTimers, type DeadlineTimers, type DnsBackend } from './backend.js';

/** What the message's authentication gave: DKIM always, DMARC and ARC when asked. */
export interface MessageAuth {
  dkim: DkimSignature[];
  dmarc?: DmarcAnswer;
  arc?: ArcAnswer;
}

/** mailauth's verifiers, loaded once some rule needs them (they pull in Joi, libmime…). */
let verifiers: Promise<[typeof import('mailauth/lib/dkim/verify.js'), typeof import('mailauth/lib/dmarc/index.js'), typeof import('mailauth/lib/arc/index.js')]> | null = null;
const load = () => (verifiers ??= Promise.all([import('mailauth/lib/dkim/verify.js'), import('mailauth/lib/dmarc/index.js'), import('mailauth/lib/arc/index.js')]));

const oneOf = <T extends string>(list: readonly T[], v: unknown, fallback: T): T => ((list as readonly unknown[]).includes(v) ? (v as T) : fallback);

/** A DKIM result in RFC 8601's words: mailauth says `neutral` for a body hash mismatch, which RFC 6376 §6.1.3 calls a failure. */
function dkimResult(result: unknown, comment: string | null): DkimResult {
  if (result === 'neutral' && comment === 'body hash did not verify') return 'fail';
  return oneOf(DKIM_RESULTS, result, 'temperror');
}

/**
 * Checks `msg` (as received) within `timeoutMs`: its DKIM signatures, and with `want.arc`
 * its ARC chain, with `want.dmarc` the From domain's DMARC from those and `spf`, with
 * `sample` as its pct sample (random unless a test gives one). Never throws: a failure
 * or the deadline gives temperror.
 */
export async function checkMessageAuth(backend: DnsBackend, msg: Buffer, spf: SpfAnswer | null, want: { dmarc: boolean; arc: boolean }, timeoutMs: number, timers: DeadlineTimers = realTimers, sample = dmarcSample()): Promise<MessageAuth> {
  const deadline = checkDeadline(timeoutMs, timers);
  const timeout = (name: string) => Object.assign(new Error(`ETIMEOUT ${name} (not done within ${timeoutMs} ms)`), { code: 'ETIMEOUT' });
  // Node's dns.promises.resolve(name, 'TXT') answers, as mailauth reads them: each record's
  // strings, joined already (RFC 6376 §3.6.2.2). A query still out at the deadline fails
  // then, so mailauth reports it as its own temperror (with the From domain) at once.
  const resolver = async (name: string, type: string): Promise<string[][]> => {
    if (deadline.expired) throw timeout(name);
    if (type !== 'TXT') throw Object.assign(new Error(`asked for a ${type} record of ${name}`), { code: 'ENOTIMP' });
    const r = await Promise.race([backend.txt(name), deadline.reached]);
    if (r === 'expired') throw timeout(name);
    return r.map((t) => [t]);
  };
  const check = async (): Promise<MessageAuth> => {
    const [{ dkimVerify }, { dmarc }, { arc }] = await load();
    const v = await dkimVerify(msg, { resolver });
    const from = v.headerFrom?.length === 1 ? (v.headerFrom[0]!.split('@').pop() ?? '').toLowerCase() : '';
    const dkim = (v.results ?? [])
      .filter((r) => r.signingDomain || r.status?.result !== 'none') // mailauth's "no signature" row
      .map((r): DkimSignature => {
        const comment = typeof r.status.comment === 'string' ? r.status.comment : null;
        return { result: dkimResult(r.status.result, comment), domain: (r.signingDomain ?? '').toLowerCase(), selector: r.selector ?? '', aligned: Boolean(r.status.aligned), comment };
      });
    const out: MessageAuth = { dkim };
    const arcResult = want.arc || want.dmarc ? await arc(v.arc as never, { resolver }) : null;
    if (want.arc) out.arc = { result: oneOf(ARC_RESULTS, arcResult?.status?.result, 'fail'), instances: Number((arcResult as { i?: number } | null)?.i) || 0 };
    if (want.dmarc) out.dmarc = from ? await dmarcOf(dmarc, from, spf, dkim, resolver, sample) : noRecord('permerror', '', sample);
    return out;
  };
  const failed = (): MessageAuth => ({ dkim: [], ...(want.dmarc ? { dmarc: noRecord('temperror', '', sample) } : {}) });
  // A backstop past the deadline: mailauth's own work (hashing a large body) is bounded by it too.
  let lateTimer: unknown;
  const late = new Promise<'late'>((resolve) => deadline.reached.then(() => (lateTimer = timers.setTimeout(() => resolve('late'), 100))));
  try {
    const r = await Promise.race([check(), late]);
    return r === 'late' ? failed() : r;
  } catch {
    return failed();
  } finally {
    deadline.clear();
    if (lateTimer !== undefined) timers.clearTimeout(lateTimer);
  }
}

type Dmarc = (typeof import('mailauth/lib/dmarc/index.js'))['dmarc'];

/** A message's sample for pct (RFC 7489 §6.6.4): 0–99, from the OS's random source, which no sender can steer. */
export const dmarcSample = (): number => randomInt(100);

/** A DMARC answer with no record behind it: no policy, nothing published, nothing aligned. */
export const noRecord = (result: DmarcResult, domain: string, sample: number): DmarcAnswer => ({ result, domain, policy: 'none', pct: 100, sample, published: null, alignment: { spf: null, dkim: null } });

/** A `p=`/`sp=` value as a policy: case-insensitive, and one that is not a policy is `none` (RFC 7489 §6.6.3, step 6). */
const policyOf = (v: unknown): DmarcPolicy => oneOf(DMARC_POLICIES, typeof v === 'string' ? v.trim().toLowerCase() : v, 'none');

/**
 * `pct=` from the record as published: a whole number, clamped to 0–100, 100 when absent
 * or not a number (§6.3's default). mailauth reads a malformed pct as 0, which would
 * switch the policy off for a typo.
 */
function pctOf(record: unknown): number {
  const m = typeof record === 'string' ? /(?:^|;)\s*pct\s*=\s*(\d+)\s*(?:;|$)/i.exec(record) : null;
  return m ? Math.min(100, Number(m[1])) : 100;
}

/** DMARC of `from` (RFC 7489 §4.2: an SPF or DKIM pass for an aligned domain). */
async function dmarcOf(dmarc: Dmarc, from: string, spf: SpfAnswer | null, dkim: DkimSignature[], resolver: (n: string, t: string) => Promise<string[][]>, sample: number): Promise<DmarcAnswer> {
  const r = await dmarc({
    headerFrom: from,
    spfDomains: spf?.result === 'pass' ? [spf.domain] : [],
    dkimDomains: dkim.filter((s) => s.result === 'pass').map((s) => ({ domain: s.domain })),
    resolver,
  } as never);
  if (!r) return noRecord('permerror', from, sample);
  const result = oneOf(DMARC_RESULTS, r.status?.result, 'temperror');
  if (result !== 'pass' && result !== 'fail') return noRecord(result, from, sample);
  const published = {
    p: policyOf(r.p), sp: policyOf(r.sp ?? r.p),
    adkim: r.alignment?.dkim?.strict ? 's' : 'r', aspf: r.alignment?.spf?.strict ? 's' : 'r',
  } as const;
  return {
    result, domain: from, policy: policyOf(r.policy), pct: pctOf(r.rr), sample, published,
    alignment: { spf: r.alignment?.spf?.result || null, dkim: r.alignment?.dkim?.result || null },
  };
}
