/**
 * `portcullis try [--config FILE] [--rules DIR] [--ip IP] [--port 25|587] [--ptr NAME]
 * [--helo NAME] [--auth USER] [TRANSCRIPT]`: replays an SMTP client transcript (a file
 * of client lines, or stdin) against the configured rules without any network, printing
 * each reply and, for each decision, the rule that made it and why — like `exim -bh`.
 * Nothing is spooled and the blacklist lives only for the run.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/config.js';
import { verifyPassword } from '../password.js';
import { authRefusal } from '../smtp/auth.js';
import { formatReply } from '../smtp/reply.js';
import { loadRuleSet, type Harness, type LogRecord, type Step } from '../testing/harness.js';

type Out = { write(s: string): unknown };

/** `MAIL FROM:<a@b> SIZE=10 BODY=8BITMIME` → address and upper-cased parameters. */
function addressCommand(line: string, verb: string): { address: string; args: Record<string, string> } | null {
  const m = new RegExp(`^${verb}:\\s*<([^<>]*)>(.*)$`, 'i').exec(line);
  if (!m) return null;
  const args: Record<string, string> = {};
  for (const p of m[2]!.trim().split(/\s+/).filter(Boolean)) {
    const [k, ...v] = p.split('=');
    args[k!.toUpperCase()] = v.join('=');
  }
  return { address: m[1]!, args };
}

/**
 * Who an AUTH line logs in as, and whether the host would take it. `AUTH PLAIN <base64>`
 * is checked against the config's password as on the wire; `AUTH USER` (what --auth
 * writes) means "USER gave the right password", so it succeeds for a user the config
 * lists and fails (535) for one it does not, as any password would on the host.
 */
async function credentials(line: string, users: Record<string, string>): Promise<{ name: string; success: boolean }> {
  const [, method, initial] = line.trim().split(/\s+/);
  if (method?.toUpperCase() === 'PLAIN' && initial) {
    const [, name = '', password = ''] = Buffer.from(initial, 'base64').toString('utf8').split('\0');
    return { name, success: await verifyPassword(Object.hasOwn(users, name) ? users[name] : undefined, password) };
  }
  const name = method ?? '';
  return { name, success: Object.hasOwn(users, name) };
}

function explain(out: Out, h: Harness, logsFrom: number, step: Step): void {
  for (const l of h.logs.slice(logsFrom) as LogRecord[]) {
    if (l.ruleLog) out.write(`    ${String(l.rule)} logged: ${String(l.msg)}\n`);
    else if (l.shadow) out.write(`    ${String(l.msg)}${l.code ? ` (${String(l.code)} ${String(l.text)})` : ''}\n`);
    else if (l.outcome) out.write(`    rule ${String(l.rule)} failed: ${String(l.outcome)}: ${String(l.error)}\n`);
  }
  if (step.rule && !step.failure) {
    const v = step.verdict;
    const reason = 'reason' in v && v.reason ? v.reason : step.rule;
    out.write(`    rule ${step.rule} decided ${v.action} (reason ${reason})${v.action === 'redirect' ? ` to ${v.address}` : ''}\n`);
  }
  for (const [n, v] of step.headers) out.write(`    + header ${n}: ${v}\n`);
  if (step.blacklist) out.write(`    + blacklist ${step.blacklist.ttlSeconds} s (${step.blacklist.reason}) by ${step.blacklist.rule}\n`);
  if (step.wellBehaved) out.write(`    + well-behaved ${step.wellBehaved.ttlSeconds} s by ${step.wellBehaved.rule}\n`);
  if (step.delayMs) out.write(`    + tarpit ${step.delayMs} ms\n`);
  for (const [symbol, points] of step.scores) out.write(`    + score ${symbol} ${points}\n`);
}

export async function tryTranscript(argv: string[], out: Out = process.stdout): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      config: { type: 'string' }, rules: { type: 'string' }, ip: { type: 'string', default: '192.0.2.1' },
      port: { type: 'string', default: '25' }, ptr: { type: 'string' }, helo: { type: 'string' }, auth: { type: 'string' }, dns: { type: 'string' },
    },
  });
  const transcript = readFileSync(positionals[0] ?? 0, 'utf8').split(/\r?\n/);
  // DNS rules look up real answers, as the server would, when the config (or --dns) names a resolver.
  const config = values.dns ? { ...loadConfig(values.config, { dns: values.dns }) } : values.config;
  const h = await loadRuleSet({ config, rulesDirs: values.rules ? [values.rules] : undefined, dns: 'config' });
  try {
    const cfg = h.config;
    let mark = h.logs.length;
    const show = (step: Step, ok: string): boolean => {
      explain(out, h, mark, step);
      mark = h.logs.length;
      out.write(`<<< ${step.reply ?? ok}\n`);
      return !step.reply?.startsWith('421') && !(step.reply && phase === 'connect');
    };
    let phase = 'connect';
    out.write(`>>> connect from ${values.ip} to port ${values.port} (rules: ${h.rules.join(', ') || 'none'})\n`);
    const s = await h.connect({ ip: values.ip, localPort: Number(values.port), ptr: values.ptr ?? null });
    if (!show(s.connected, `220 ${cfg.hostname} ESMTP ${cfg.banner}`)) return 0;
    phase = 'session';
    const lines = [...(values.helo ? [`EHLO ${values.helo}`] : []), ...(values.auth ? [`AUTH ${values.auth}`] : []), ...transcript];
    let hasMail = false;
    let hasRcpt = false;
    let user: string | null = null;
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      if (!line.trim()) continue;
      out.write(`>>> ${line}\n`);
      const verb = line.split(/\s+/)[0]!.toUpperCase();
      let go = true;
      if (verb === 'HELO' || verb === 'EHLO') {
        const name = line.split(/\s+/)[1] ?? '';
        go = show(await s.helo(name, verb), `250 ${cfg.hostname} Nice to meet you`);
        hasMail = hasRcpt = false;
      } else if (verb === 'AUTH') {
        // Refused before any password as the host would (AUTH off, STARTTLS first, a second AUTH).
        const refused = authRefusal(cfg, { tls: false, user });
        if (refused) out.write(`<<< ${formatReply(refused)}\n`);
        else {
          const { name, success } = await credentials(line, cfg.auth.users);
          const st = await s.auth(name, { success });
          if (!st.reply) user = name;
          go = show(st, '235 2.7.0 Authentication successful');
        }
      } else if (verb === 'MAIL') {
        const a = addressCommand(line, 'MAIL FROM');
        if (!a) out.write('<<< 501 5.1.7 Error: Bad sender address syntax\n');
        else {
          const st = await s.mail(a.address, a.args);
          hasMail = !st.reply;
          go = show(st, '250 2.1.0 Accepted');
        }
      } else if (verb === 'RCPT') {
        const a = addressCommand(line, 'RCPT TO');
        if (!hasMail) out.write('<<< 503 5.5.1 Error: need MAIL command\n');
        else if (!a || !a.address) out.write('<<< 501 5.1.3 Error: Bad recipient address syntax\n');
        else {
          const st = await s.rcpt(a.address, a.args);
          hasRcpt ||= !st.reply;
          go = show(st, '250 2.1.5 Accepted');
        }
      } else if (verb === 'DATA') {
        if (!hasRcpt) {
          out.write('<<< 503 5.5.1 Error: need RCPT command\n');
          continue;
        }
        const d = await s.data();
        go = show(d, '354 End data with <CR><LF>.<CR><LF>');
        if (d.reply) continue;
        const body: string[] = [];
        while (++i < lines.length && lines[i] !== '.') body.push(lines[i]!.startsWith('..') ? lines[i]!.slice(1) : lines[i]!);
        const msg = Buffer.from(body.map((l) => `${l}\r\n`).join(''));
        out.write(`>>> (message: ${body.length} lines, ${msg.length} bytes)\n`);
        const m = await s.message(msg, { skipData: true });
        go = show(m, m.accepted ? `250 2.0.0 Ok: not queued (try mode; would ${m.accepted.disposition === 'deliver' ? 'deliver' : m.accepted.disposition})` : '');
        // The score header is the transaction's, not one rule's: shown with what would be delivered.
        const score = m.accepted?.headers.find(([n]) => n === h.config.scores.header);
        if (score) out.write(`    + header ${score[0]}: ${score[1]}\n`);
        hasMail = hasRcpt = false;
      } else if (verb === 'RSET') {
        s.rset();
        hasMail = hasRcpt = false;
        out.write('<<< 250 2.0.0 Flushed\n');
      } else if (verb === 'QUIT') {
        await s.close();
        out.write('<<< 221 2.0.0 Bye\n');
        return 0;
      } else if (verb === 'NOOP') {
        out.write('<<< 250 2.0.0 OK\n');
      } else {
        out.write('<<< 500 5.5.2 Error: command not recognized\n');
      }
      if (!go) {
        out.write('(connection closed)\n');
        break;
      }
    }
    await s.close();
    return 0;
  } finally {
    await h.close();
  }
}
