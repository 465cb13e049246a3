/**
 * SPF (RFC 7208) through mailauth's check_host(), with every DNS query it makes sent
 * through our DnsBackend: the configured servers, each query under the host's deadline,
 * and in tests the same real servers (or table) as the other facts.
 *
 * The whole check is bounded by one deadline too (`timeoutMs`, the DNS deadline): a
 * policy may chain up to 10 lookups (§4.6.4), and a session must not wait ten times
 * the deadline for one fact. RFC 7208 §4.6.4 suggests allowing at least 20 s; we give
 * up sooner because a `temperror` costs nothing here (an SPF pass only ever whitelists),
 * while a client held at MAIL FROM waits for it.
 */
import { hostname } from 'node:os';
import { SPF_RESULTS, type SpfAnswer, type SpfResult } from '../../sdk/index.js';
import { domainOf } from '../net.js';
import { checkDeadline, realTimers, type DeadlineTimers, type DnsBackend } from './backend.js';

/** What was checked: the client, its MAIL FROM ('' for the null sender) and its HELO name. */
export interface SpfQuery {
  ip: string;
  sender: string;
  helo: string | null;
}

/** The answer, with what the host logs and counts beside it (the rule sees only `answer`). */
export interface SpfOutcome {
  answer: SpfAnswer;
  /** mailauth's words on a temperror or permerror ("Too many DNS requests"…), else null. */
  why: string | null;
  /** The DNS error code behind a temperror (`ETIMEOUT` when the deadline ran out). */
  code: string | null;
  /**
   * The policy read the local part or the HELO name (`%{s}`, `%{l}`, `%{h}` macros, §7.2):
   * its result holds for this sender only, so it must not be cached per domain.
   */
  personal: boolean;
}

/**
 * The identity SPF checks and its domain: the MAIL FROM domain, or with the null sender
 * the HELO name (RFC 7208 §2.4: mailauth checks `postmaster@<helo>` then).
 */
export function spfIdentity(sender: string, helo: string | null): Pick<SpfAnswer, 'identity' | 'domain'> {
  return sender ? { identity: 'mailfrom', domain: domainOf(sender) } : { identity: 'helo', domain: (helo ?? '').toLowerCase() };
}

/** mailauth loads Joi, libmime and more (about 0.2 s): only once some rule needs SPF. */
let mailauth: Promise<typeof import('mailauth/lib/spf/index.js')> | null = null;

/** Macros whose value is the sender's local part or the HELO name, in any case (§7.2). */
const PERSONAL_MACRO = /%\{[slh]/i;

const timeoutError = (name: string, ms: number) => Object.assign(new Error(`SPF check ETIMEOUT ${name} (not done within ${ms} ms)`), { code: 'ETIMEOUT' });

/** check_host() for `q`, within `timeoutMs`. Never throws: a failure is a temperror. */
export async function checkSpf(backend: DnsBackend, q: SpfQuery, timeoutMs: number, timers: DeadlineTimers = realTimers): Promise<SpfOutcome> {
  const { identity, domain } = spfIdentity(q.sender, q.helo);
  const deadline = checkDeadline(timeoutMs, timers);
  let personal = false;
  let code: string | null = null;
  // Node's dns.promises.resolve(name, type) answers, in the shapes mailauth reads.
  const resolver = async (name: string, type: string): Promise<string[][] | string[]> => {
    if (deadline.expired) throw timeoutError(name, timeoutMs); // mailauth stops at the first error: no queries after the deadline
    try {
      switch (type) {
        case 'TXT': {
          const records = await backend.txt(name);
          if (records.some((r) => /^\s*v=spf1\b/i.test(r) && PERSONAL_MACRO.test(r))) personal = true;
          return records.map((r) => [r]); // each record's strings, already joined (§3.3)
        }
        case 'A': return await backend.a(name);
        case 'AAAA': return await backend.aaaa(name);
        // mailauth's type says strings, but it reads `.exchange` of each MX, as Node's resolveMx gives them.
        case 'MX': return (await backend.mx(name)).map((exchange, priority) => ({ exchange, priority })) as unknown as string[];
        case 'PTR': return await backend.ptr(name);
        default: throw Object.assign(new Error(`SPF asked for a ${type} record of ${name}`), { code: 'ENOTIMP' });
      }
    } catch (e) {
      const c = (e as { code?: string }).code;
      if (c !== 'ENOTFOUND' && c !== 'ENODATA') code = c ?? 'EUNKNOWN'; // "no such name" is an answer, not a failure
      throw e;
    }
  };
  // `mta` is only the name mailauth starts its comments with (and `%{r}` in explanations).
  const mta = hostname();
  const check = (mailauth ??= import('mailauth/lib/spf/index.js')).then(({ spf }) => spf({ sender: q.sender, ip: q.ip, helo: q.helo ?? undefined, mta, resolver }));
  try {
    const r = await Promise.race([check, deadline.reached]);
    if (r === 'expired') return { answer: { result: 'temperror', domain, identity }, why: `not done within ${timeoutMs} ms`, code: 'ETIMEOUT', personal };
    const result = (SPF_RESULTS as readonly string[]).includes(r.status.result) ? (r.status.result as SpfResult) : 'temperror';
    const why = result === 'temperror' || result === 'permerror' ? (r.status.comment?.replace(`${mta}: `, '') ?? null) : null;
    return { answer: { result, domain: r.domain || domain, identity }, why, code: result === 'temperror' ? (code ?? 'ETEMPERROR') : null, personal };
  } catch (e) {
    // mailauth turns DNS failures into results itself; anything else is ours to report.
    return { answer: { result: 'temperror', domain, identity }, why: (e as Error).message, code: 'EUNKNOWN', personal };
  } finally {
    deadline.clear();
  }
}
