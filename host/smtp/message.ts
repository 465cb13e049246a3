/**
 * The message as rules see it: header fields parsed (with mailsplit, the MIME splitter
 * of the nodemailer family), size, and optionally a capped body.
 */
import Headers from 'mailsplit/lib/headers.js';

/** Offset where the body starts (after the blank line), or the length when there is none. */
export function bodyOffset(msg: Buffer): number {
  const crlf = msg.indexOf('\r\n\r\n');
  if (crlf >= 0) return crlf + 4;
  if (msg.subarray(0, 2).toString() === '\r\n') return 2; // no header fields at all
  return msg.length;
}

/** `[name as written, unfolded value with encoded-words decoded]` for each field, in order. */
export function parseHeaders(msg: Buffer, offset: number): [string, string][] {
  const h = new Headers(msg.subarray(0, offset));
  return h.getList().map(({ line }) => {
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon).trim() : line.trim();
    let value: string;
    try {
      // decodeHeader unfolds; decodeWords turns RFC 2047 encoded-words into text.
      value = h.libmime.decodeWords(h.libmime.decodeHeader(line).value);
    } catch {
      value = line.slice(colon + 1);
    }
    return [name, value.replace(/\r?\n[ \t]*/g, ' ').trim()];
  });
}

/** RFC 5321 §4.4 trace field, e.g. `Received: from mx.example ([192.0.2.1]) by us with ESMTP id X; date`. */
export function receivedHeader(o: { heloName: string | null; ip: string; ptr: string | null; by: string; protocol: string; id: string; rcpt?: string; date: Date }): string {
  const from = `from ${o.heloName ?? 'unknown'} (${o.ptr ? `${o.ptr} ` : ''}[${o.ip}])`;
  const forPart = o.rcpt ? `\r\n\tfor <${o.rcpt}>` : '';
  return `Received: ${from}\r\n\tby ${o.by} (Portcullis) with ${o.protocol} id ${o.id}${forPart};\r\n\t${o.date.toUTCString().replace('GMT', '+0000')}\r\n`;
}

/** A header field line (CRLF-terminated) from a rule's addHeader(name, value). */
export function headerLine(name: string, value: string): string {
  return `${name}: ${value}\r\n`;
}
