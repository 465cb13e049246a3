/**
 * The message's header block, as delivery touches it: the field lines we add in front of
 * the message (our Received, the rules' headers) and where the header ends (a bounce
 * returns only the header).
 */

/** Offset where the body starts (after the blank line), or the length when there is none. */
export function bodyOffset(msg: Buffer): number {
  const crlf = msg.indexOf('\r\n\r\n');
  if (crlf >= 0) return crlf + 4;
  if (msg.subarray(0, 2).toString() === '\r\n') return 2; // no header fields at all
  return msg.length;
}

/** RFC 5321 §4.4 trace field, e.g. `Received: from mx.example ([192.0.2.1]) by us with ESMTP id X; date`. */
export function receivedHeader(o: { heloName: string | null; ip: string; ptr: string | null; by: string; protocol: string; id: string; rcpt?: string; date: Date }): string {
  const from = `from ${o.heloName ?? 'unknown'} (${o.ptr ? `${o.ptr} ` : ''}[${o.ip}])`;
  const forPart = o.rcpt ? `\r\n\tfor <${o.rcpt}>` : '';
  return `Received: ${from}\r\n\tby ${o.by} (Portcullis) with ${o.protocol} id ${o.id}${forPart};\r\n\t${o.date.toUTCString().replace('GMT', '+0000')}\r\n`;
}

/** Header fields added by rules (addHeader(name, value)) or the external checker, as CRLF-terminated lines. */
export function headerLines(fields: [string, string][]): string {
  return fields.map(([name, value]) => `${name}: ${value}\r\n`).join('');
}
