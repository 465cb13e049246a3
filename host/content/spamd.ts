/**
 * A client of SpamAssassin's spamd, the `spamd` fact (smtpf 2.0's spamd support, seed 003):
 * one TCP connection per message, SPAMC/1.5's `SYMBOLS` request, spamd's verdict back.
 * No npm client of spamd is kept up, and the protocol is a few lines (spamd/PROTOCOL in
 * the SpamAssassin sources, https://svn.apache.org/repos/asf/spamassassin/trunk/spamd/PROTOCOL):
 *
 *   SYMBOLS SPAMC/1.5\r\n  Content-length: <bytes>\r\n  \r\n  <message>
 *   → SPAMD/1.1 0 EX_OK\r\n  Content-length: <n>\r\n  Spam: True ; 1000.0 / 5.0\r\n  \r\n  GTUBE,MISSING_DATE
 *
 * spamd answers and closes the connection. Never throws: a refused connection, a timeout
 * (`timeoutMs`, the whole exchange) or an answer we cannot read is `{ error }`, which the
 * spamassassin rule turns into a rule failure (its fail policy: 451 by default), never a pass.
 */
import { connect } from 'node:net';
import type { SpamdFact } from '../../sdk/index.js';

export interface SpamdConfig {
  host: string;
  port: number;
  /** The whole exchange: connect, send, spamd's scan, the answer. */
  timeoutMs: number;
}

/** spamd's `Spam:` header: `True ; 7.2 / 5.0` (PROTOCOL: "Spam: <bool> ; <score> / <threshold>"). */
const SPAM_HEADER = /^Spam:\s*(True|False|Yes|No)\s*;\s*(-?[\d.]+)\s*\/\s*(-?[\d.]+)\s*$/im;

/** Parses spamd's whole answer to SYMBOLS. */
export function parseSymbolsAnswer(raw: string): SpamdFact {
  const end = raw.indexOf('\r\n\r\n');
  const head = end < 0 ? raw : raw.slice(0, end);
  const status = /^SPAMD\/[\d.]+ (\d+) (.*)$/m.exec(head);
  if (!status) return { error: `spamd: not a SPAMD answer: ${JSON.stringify(raw.slice(0, 80))}` };
  if (status[1] !== '0') return { error: `spamd: ${status[1]} ${status[2]!.trim()}` };
  const spam = SPAM_HEADER.exec(head);
  if (!spam) return { error: 'spamd: its answer has no Spam: header' };
  const body = end < 0 ? '' : raw.slice(end + 4).trim();
  return {
    score: Number(spam[2]),
    threshold: Number(spam[3]),
    isSpam: /^(true|yes)$/i.test(spam[1]!),
    symbols: body ? body.split(',').map((s) => s.trim()).filter(Boolean) : [],
  };
}

export class SpamdClient {
  constructor(private readonly config: SpamdConfig) {}

  /** spamd's verdict on `message` (the message as received), or why there is none. */
  check(message: Buffer): Promise<SpamdFact> {
    const { host, port, timeoutMs } = this.config;
    return new Promise((resolve) => {
      const chunks: Buffer[] = [];
      let done = false;
      const finish = (f: SpamdFact): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        socket.destroy();
        resolve(f);
      };
      const timer = setTimeout(() => finish({ error: `spamd at ${host}:${port} did not answer within ${timeoutMs} ms` }), timeoutMs);
      const socket = connect({ host, port }, () => {
        socket.write(`SYMBOLS SPAMC/1.5\r\nContent-length: ${message.length}\r\n\r\n`);
        socket.end(message);
      });
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.on('end', () => finish(parseSymbolsAnswer(Buffer.concat(chunks).toString('latin1'))));
      socket.on('error', (e: NodeJS.ErrnoException) => finish({ error: `spamd at ${host}:${port}: ${e.code ?? e.message}` }));
    });
  }
}
