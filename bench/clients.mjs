// Raw-socket SMTP clients for the benchmark's latency and idle-memory parts: what a
// real client does, timed per command, from its own loopback address.
import { connect } from 'node:net';

/** A connected SMTP client: `reply()` waits for the next complete reply (multi-line too). */
export function smtpClient(port, localAddress = '127.0.0.1') {
  const sock = connect({ port, host: '127.0.0.1', localAddress });
  let buf = '';
  let waiter = null;
  const complete = () => /(^|\r\n)\d{3} [^\r\n]*\r\n$/.test(buf);
  sock.on('data', (d) => {
    buf += d;
    if (waiter && complete()) {
      const w = waiter;
      waiter = null;
      w();
    }
  });
  const failed = new Promise((_, reject) => sock.on('error', reject));
  failed.catch(() => {});
  const reply = () => Promise.race([failed, new Promise((ok) => (complete() ? ok() : (waiter = ok)))]).then(() => {
    const b = buf;
    buf = '';
    return b;
  });
  return {
    sock,
    reply,
    /** Sends `line` and resolves with the reply and the ms it took. */
    async timed(line) {
      const t0 = performance.now();
      sock.write(line + '\r\n');
      const text = await reply();
      return { text, ms: performance.now() - t0 };
    },
  };
}

/** The i-th of many distinct client addresses in 127.0.0.0/8 (127.0.0.1 left to the load generator). */
export const clientAddress = (i, net = 0) => `127.${net}.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`;

/** About 1 KB, with the headers a real client sends, ending with the final dot. */
const MESSAGE = `From: a@example.org\r\nTo: rcpt@localhost\r\nSubject: latency\r\nDate: ${new Date().toUTCString()}\r\nMessage-ID: <latency@example.org>\r\n\r\n${`${'y'.repeat(76)}\r\n`.repeat(12)}.`;

/**
 * `sessions` sequential sessions, each from its own address, each sending one 1 KB
 * message; returns the reply times in ms per command (connect = the 220 greeting).
 */
export async function commandLatencies(port, sessions) {
  const times = { connect: [], EHLO: [], MAIL: [], RCPT: [], DATA: [], 'end of data': [], QUIT: [] };
  for (let i = 0; i < sessions; i++) {
    const t0 = performance.now();
    const c = smtpClient(port, clientAddress(i));
    const expect = (r, code, what) => {
      if (!r.text.startsWith(code)) throw new Error(`${what}: expected ${code}, got ${r.text.trim()}`);
      return r.ms;
    };
    const greeting = await c.reply();
    if (!greeting.startsWith('220')) throw new Error(`greeting: ${greeting.trim()}`);
    times.connect.push(performance.now() - t0);
    times.EHLO.push(expect(await c.timed('EHLO client.example.org'), '250', 'EHLO'));
    times.MAIL.push(expect(await c.timed('MAIL FROM:<a@example.org>'), '250', 'MAIL'));
    times.RCPT.push(expect(await c.timed('RCPT TO:<rcpt@localhost>'), '250', 'RCPT'));
    times.DATA.push(expect(await c.timed('DATA'), '354', 'DATA'));
    times['end of data'].push(expect(await c.timed(MESSAGE), '250', 'end of data'));
    times.QUIT.push(expect(await c.timed('QUIT'), '221', 'QUIT'));
    c.sock.destroy();
  }
  return times;
}

/**
 * Opens `count` connections that read the greeting and then sit idle, from distinct
 * addresses in 127.1.0.0/16, at most `parallel` being opened at once. Resolves with
 * close() once all are greeted.
 */
export async function idleConnections(port, count, parallel = 200) {
  const clients = [];
  let next = 0;
  const open = async () => {
    while (next < count) {
      const c = smtpClient(port, clientAddress(next++, 1));
      clients.push(c);
      const greeting = await c.reply();
      if (!greeting.startsWith('220')) throw new Error(`idle connection ${clients.length}: ${greeting.trim()}`);
    }
  };
  await Promise.all(Array.from({ length: parallel }, open));
  return { close: () => clients.forEach((c) => c.sock.destroy()) };
}

/**
 * Sends `messages` copies of `raw` (a whole message, CRLF lines, not dot-stuffed) over
 * `sessions` parallel connections, many messages per connection, one command at a time:
 * the load for a message of our own, which smtp-source cannot send (it writes a fixed
 * body of `-l` bytes). Any unexpected reply, a connection the server closes, or a run
 * longer than `timeoutMs` fails it, as smtp-source does; resolves { msgs, seconds, msgsPerSec }.
 */
export async function sendMessages({ port, raw, messages, sessions = 20, timeoutMs = 300_000 }) {
  // RFC 5321 §4.5.2: a line starting with a dot gets another; then the final dot.
  const data = `${raw.replace(/\r\n\./g, '\r\n..').replace(/^\./, '..').replace(/\r\n$/, '')}\r\n.`;
  let left = messages;
  const socks = [];
  const session = async () => {
    const c = smtpClient(port);
    socks.push(c.sock);
    const closed = new Promise((_, reject) => c.sock.once('close', () => reject(new Error('the server closed the connection'))));
    closed.catch(() => {});
    const expect = async (line, code, what = line ?? 'greeting') => {
      const { text } = await Promise.race([line === null ? c.reply().then((text) => ({ text })) : c.timed(line), closed]);
      if (!text.startsWith(code)) throw new Error(`${what}: expected ${code}, got ${text.trim().slice(0, 200)}`);
    };
    try {
      await expect(null, '220');
      await expect('EHLO bench.example', '250');
      while (left > 0) {
        left--;
        await expect('MAIL FROM:<bench@localhost>', '250');
        await expect('RCPT TO:<rcpt@localhost>', '250');
        await expect('DATA', '354');
        await expect(data, '250', 'end of data');
      }
      c.sock.end('QUIT\r\n');
    } catch (e) {
      c.sock.destroy();
      throw e;
    }
  };
  const t0 = performance.now();
  const timer = setTimeout(() => socks.forEach((s) => s.destroy(new Error(`timed out after ${timeoutMs} ms`))), timeoutMs); // never hang a run
  try {
    await Promise.all(Array.from({ length: Math.min(sessions, messages) }, session));
  } finally {
    clearTimeout(timer);
  }
  const seconds = (performance.now() - t0) / 1000;
  return { msgs: messages, seconds, msgsPerSec: messages / seconds };
}
