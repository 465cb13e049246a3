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

/**
 * `msg` without the header fields named in `names` (lower case), each with its folded
 * continuation lines (RFC 5322 §2.2.3): what rules asked with `ctx.removeHeader`. The
 * body is untouched.
 */
export function withoutFields(msg: Buffer, names: readonly string[]): Buffer {
  if (!names.length) return msg;
  const offset = bodyOffset(msg);
  const head = msg.subarray(0, offset).toString('latin1');
  const drop = new Set(names);
  let dropping = false;
  const kept = head.split(/(?<=\n)/).filter((line) => {
    if (line === '\r\n' || line === '\n') return true; // the blank line ending the header
    if (!/^[ \t]/.test(line)) dropping = drop.has(line.slice(0, Math.max(0, line.indexOf(':'))).trim().toLowerCase());
    return !dropping;
  });
  return Buffer.concat([Buffer.from(kept.join(''), 'latin1'), msg.subarray(offset)]);
}
