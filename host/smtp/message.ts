/**
 * The message as rules see it: header fields parsed (with mailsplit, the MIME splitter
 * of the nodemailer family), size, and optionally a capped body.
 */
import Headers from 'mailsplit/lib/headers.js';


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
