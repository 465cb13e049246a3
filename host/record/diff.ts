/**
 * What a replay changed: each recorded command against its replay, and per rule how many
 * sessions, recipients and messages would now be refused, tempfailed, accepted or tagged
 * that were not before (with sample session ids), plus changes of wording only.
 *
 * A command's outcome: `refused` (5xx), `tempfailed` (4xx), `tagged` (a message accepted
 * with a disposition other than deliver, a header a rule added, or the score header saying
 * tag=yes) or `accepted`. A change is counted for the rule that decided the new outcome
 * (a new refusal, tempfail or tag), or for a new acceptance the rule that decided before.
 */
import type { RecordedAcceptance, RecordedSession, RecordedStep } from '../../sdk/index.js';
import { AUTH_RESULTS_FIELD } from '../delivery/auth-results.js';
import type { ReplayedSession, ReplayedStep } from './replay.js';

export type Outcome = 'accepted' | 'tagged' | 'tempfailed' | 'refused';
/** `reworded`: the same outcome with another reply line, header or disposition. */
export type Change = Outcome | 'reworded';
export const CHANGES: readonly Change[] = ['refused', 'tempfailed', 'tagged', 'accepted', 'reworded'];

/** What a change is counted in: the client's session, a recipient, a message (MAIL, DATA, the message). */
export type Unit = 'sessions' | 'recipients' | 'messages';
const UNIT: Record<RecordedStep['cmd'], Unit> = { connect: 'sessions', helo: 'sessions', auth: 'sessions', close: 'sessions', rset: 'sessions', mail: 'messages', data: 'messages', message: 'messages', rcpt: 'recipients' };

/** A header field every accepted message may get from the host itself (not a tag). */
export const isHostField = (name: string): boolean => name.toLowerCase() === AUTH_RESULTS_FIELD.toLowerCase();

export function outcomeOf(reply: string | null, accepted: RecordedAcceptance | null, scoreHeader: string): Outcome {
  if (reply) return reply.startsWith('4') ? 'tempfailed' : 'refused';
  if (!accepted) return 'accepted';
  if (accepted.disposition !== 'deliver') return 'tagged';
  const score = scoreHeader.toLowerCase();
  const tagged = accepted.headers.some(([n, v]) => {
    const name = n.toLowerCase();
    return name === score ? / tag=yes\b/.test(v) : !isHostField(n);
  });
  return tagged ? 'tagged' : 'accepted';
}

/** One command whose outcome changed. */
export interface StepChange {
  /** Index in the session's steps. */
  step: number;
  command: string;
  change: Change;
  unit: Unit;
  /** The rule the change is counted for (`host`: no rule). */
  rule: string;
  recorded: { reply: string | null; rule: string | null; outcome: Outcome };
  replayed: { reply: string | null; rule: string | null; outcome: Outcome; failure?: string };
}

export interface SessionDiff {
  id: string;
  /** When it started (ms since the epoch) and the client. */
  start: number;
  client: string;
  changes: StepChange[];
  /** Commands the recorded client sent that it could not have sent now. */
  notReached: number;
  missing: string[];
}

/** The client command a step was, as a transcript shows it. */
export function commandLine(s: RecordedStep): string {
  switch (s.cmd) {
    case 'connect': return 'connect';
    case 'helo': return `${s.verb} ${s.name}`;
    case 'auth': return `AUTH ${s.method} ${s.user} (${s.success ? 'right' : 'wrong'} password)`;
    case 'mail': return `MAIL FROM:<${s.address}>`;
    case 'rcpt': return `RCPT TO:<${s.address}>`;
    case 'rset': return 'RSET';
    case 'data': return 'DATA';
    case 'message': return `(message, ${s.size} bytes)`;
    case 'close': return 'close';
  }
}

const acceptedOf = (s: RecordedStep): RecordedAcceptance | null => (s.cmd === 'message' ? s.accepted : null);
const replyOf = (s: RecordedStep): { reply: string | null; rule: string | null } => (s.cmd === 'rset' ? { reply: null, rule: null } : { reply: s.reply, rule: s.rule });

function sameAcceptance(a: RecordedAcceptance | null, b: RecordedAcceptance | null): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** The changes between a recorded session and its replay. */
export function diffSession(rec: RecordedSession, rep: ReplayedSession, scoreHeader: string): SessionDiff {
  const changes: StepChange[] = [];
  let notReached = 0;
  rec.steps.forEach((s, i) => {
    const r: ReplayedStep = rep.steps[i]!;
    if (!r.reached) return void notReached++;
    const before = replyOf(s);
    const was = outcomeOf(before.reply, acceptedOf(s), scoreHeader);
    const now = outcomeOf(r.reply, r.accepted, scoreHeader);
    if (was === now && before.reply === r.reply && (s.cmd !== 'message' || sameAcceptance(s.accepted, r.accepted))) return;
    const change: Change = was === now ? 'reworded' : now;
    const rule = (now === 'accepted' ? before.rule : r.rule ?? (now === 'tagged' ? r.accepted?.rule : null)) ?? 'host';
    changes.push({ step: i, command: commandLine(s), change, unit: UNIT[s.cmd], rule, recorded: { ...before, outcome: was }, replayed: { reply: r.reply, rule: r.rule, outcome: now, ...(r.failure ? { failure: r.failure } : {}) } });
  });
  return { id: rec.id, start: rec.steps[0]!.t, client: `${rec.client.ptr ?? 'unknown'}[${rec.client.ip}]`, changes, notReached, missing: rep.missing };
}

/** Per rule and change: how many sessions, recipients and messages, and some session ids. */
export interface RuleChanges {
  rule: string;
  change: Change;
  sessions: number;
  recipients: number;
  messages: number;
  samples: string[];
}

const SAMPLES = 5;

export class ReplaySummary {
  sessions = 0;
  changed = 0;
  /** Sessions whose candidate rules needed facts the record lacks, by need. */
  readonly missing = new Map<string, number>();
  private readonly byRule = new Map<string, RuleChanges & { seen: Set<string> }>();

  add(d: SessionDiff): void {
    this.sessions++;
    for (const m of d.missing) this.missing.set(m, (this.missing.get(m) ?? 0) + 1);
    if (!d.changes.length) return;
    this.changed++;
    for (const c of d.changes) {
      const key = `${c.rule}\0${c.change}`;
      let e = this.byRule.get(key);
      if (!e) this.byRule.set(key, (e = { rule: c.rule, change: c.change, sessions: 0, recipients: 0, messages: 0, samples: [], seen: new Set() }));
      if (c.unit !== 'sessions') e[c.unit]++;
      if (!e.seen.has(d.id)) {
        e.seen.add(d.id);
        e.sessions++;
        if (e.samples.length < SAMPLES) e.samples.push(d.id);
      }
    }
  }

  /** Rule by rule (by name), changes in CHANGES order. */
  rules(): RuleChanges[] {
    return [...this.byRule.values()]
      .sort((a, b) => a.rule.localeCompare(b.rule) || CHANGES.indexOf(a.change) - CHANGES.indexOf(b.change))
      .map(({ seen: _seen, ...r }) => r);
  }
}
