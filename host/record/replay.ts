/**
 * Replays one recorded session through a RuleSet: the host's own session logic
 * (SmtpSession, as the front door and the test harness drive it) and the real sandbox,
 * with the session's recorded clock, TLS state, facts (facts.ts) and the store's word on
 * the client at connect (its blacklist entry and well-behaved mark, as the live host read
 * them: a snapshot taken later would hold entries the recorded sessions themselves made).
 *
 * The recorded commands are sent as the client sent them, as far as the replayed replies
 * let a client go: after a refused connect or a 421 nothing but the close is reached; a
 * RCPT needs an accepted MAIL, DATA an accepted RCPT, the message an accepted DATA (a
 * command not reached is reported, and counted under the change that stopped it).
 */
import type { Logger } from 'pino';
import type { RecordedAcceptance, RecordedSession, RecordedStep } from '../../sdk/index.js';
import type { Metrics } from '../metrics.js';
import type { Pipeline } from '../pipeline/pipeline.js';
import type { RuleSet } from '../pipeline/ruleset.js';
import { formatReply, REPLIES } from '../smtp/reply.js';
import { SmtpSession, type CommandResult, type SessionDeps, type SessionPolicy, type SessionStore } from '../smtp/session.js';
import { RecordedFacts } from './facts.js';

/** What a replay runs in: the candidate's policy, its pipeline (over the sandbox), the replay's store. */
export interface ReplayDeps {
  policy: SessionPolicy;
  pipeline: Pipeline;
  /** The replay's store (a snapshot or empty): what rules' effects write, mailboxes not in the record. */
  store: SessionStore;
  log: Logger;
  metrics: Metrics;
}

/** One recorded command as replayed. */
export interface ReplayedStep {
  /** False: the client could not have sent it (an earlier command was refused now). */
  reached: boolean;
  reply: string | null;
  rule: string | null;
  /** The rule failed (timeout, crash…) and its fail policy answered: what happened to it. */
  failure?: string;
  /** The message step: accepted, where to and with which header fields. */
  accepted: RecordedAcceptance | null;
}

export interface ReplayedSession {
  id: string;
  /** One per recorded step, in order. */
  steps: ReplayedStep[];
  /** Facts the candidate's rules asked for that the record lacks (`dnsbl:<zone>`, `spf`, `body`…). */
  missing: string[];
}

const NOT_REACHED: ReplayedStep = Object.freeze({ reached: false, reply: null, rule: null, accepted: null });

function replayed(r: CommandResult): ReplayedStep {
  return { reached: true, reply: r.reply && formatReply(r.reply), rule: r.decision.rule, accepted: null, ...(r.decision.failure ? { failure: r.decision.failure } : {}) };
}

export async function replaySession(rec: RecordedSession, ruleSet: RuleSet, d: ReplayDeps): Promise<ReplayedSession> {
  const facts = new RecordedFacts(rec.facts);
  const c = rec.client;
  let now = rec.steps[0]!.t;
  let tls = false;
  const blacklisted = rec.blacklist && { ...rec.blacklist, ip: c.ip, created: now };
  const store: SessionStore = {
    blacklistGet: () => blacklisted ?? undefined,
    blacklistExtend: (...a) => d.store.blacklistExtend(...a),
    wellBehaved: () => rec.wellBehaved,
    markWellBehaved: (...a) => d.store.markWellBehaved(...a),
    mailbox: (a) => facts.mailbox(a, (x) => d.store.mailbox(x)),
  };
  const deps: SessionDeps = {
    policy: d.policy, pipeline: d.pipeline, store, log: d.log, metrics: d.metrics,
    now: () => now, delay: async () => undefined,
    dns: rec.dns ? facts.dns : null, spamd: facts.spamd, callahead: facts.callahead, clientSessions: () => facts.clientSessions(),
  };
  const session = new SmtpSession(deps, { id: rec.id, ip: c.ip, port: c.port, ptr: c.ptr, localIp: c.localIp, localPort: c.localPort, tls: () => tls }, ruleSet);
  const steps: ReplayedStep[] = [];
  let open = true;
  let mail = false;
  let rcpts = 0;
  let data = false;
  let messages = 0;
  const run = async (s: RecordedStep): Promise<ReplayedStep> => {
    switch (s.cmd) {
      case 'connect': {
        const r = replayed(await session.connect());
        open = r.reply === null;
        return r;
      }
      case 'helo': {
        const r = replayed(await session.heloCommand(s.verb, s.name));
        if (!r.reply) mail = data = false;
        return r;
      }
      case 'auth':
        return replayed(await session.auth(s.method, s.user, s.success));
      case 'mail': {
        const r = replayed(await session.mail(s.address, s.args));
        mail = r.reply === null;
        rcpts = 0;
        data = false;
        return r;
      }
      case 'rcpt': {
        if (!mail) return NOT_REACHED;
        const r = replayed(await session.rcpt(s.address, s.args));
        if (!r.reply) rcpts++;
        return r;
      }
      case 'rset':
        session.rset();
        mail = data = false;
        return { reached: true, reply: null, rule: null, accepted: null };
      case 'data': {
        if (!mail || !rcpts) return NOT_REACHED;
        const r = replayed(await session.data());
        data = r.reply === null;
        if (!data) mail = false;
        return r;
      }
      case 'message': {
        facts.message = messages++;
        if (!data) return NOT_REACHED;
        mail = data = false;
        if (s.body === null && (ruleSet.needsBody || ruleSet.needsMime || ruleSet.needsUris)) facts.missing.add('body'); // and what is read from it: MIME parts, links
        const msg = Buffer.from(s.head + (s.body ?? ''), 'latin1');
        const out = await session.message(msg, { size: s.size });
        const a = out.accepted;
        return { ...replayed(out), accepted: a && { disposition: a.disposition.action, rule: a.disposition.rule, headers: a.headers } };
      }
      case 'close':
        return replayed(await session.close());
    }
  };
  try {
    for (const s of rec.steps) {
      now = s.t;
      tls = 'tls' in s && s.tls === true;
      if (!open && s.cmd !== 'close') {
        if (s.cmd === 'message') facts.message = messages++;
        steps.push(NOT_REACHED);
        continue;
      }
      let r: ReplayedStep;
      try {
        r = await run(s);
      } catch (e) {
        // As the front door answers it (its one place for unexpected errors).
        d.log.error({ session: rec.id, err: e }, `replay: internal error at ${s.cmd}: ${(e as Error).message}`);
        r = { reached: true, reply: formatReply(REPLIES.internal(rec.id)), rule: null, accepted: null };
      }
      if (r.reply?.startsWith('421')) open = false;
      steps.push(r);
    }
  } finally {
    d.pipeline.endSession(rec.id);
  }
  return { id: rec.id, steps, missing: [...facts.missing].sort() };
}
