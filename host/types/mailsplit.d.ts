// Minimal types for the parts of mailsplit (no bundled types) that Portcullis uses.
declare module 'mailsplit/lib/headers.js' {
  interface HeaderLine {
    /** Lower-cased field name. */
    key: string;
    /** The whole field as received, folded, without the trailing CRLF. */
    line: string;
  }
  export default class Headers {
    constructor(headers: Buffer | string);
    getList(): HeaderLine[];
    libmime: { decodeHeader(line: string): { key: string; value: string }; decodeWords(value: string): string };
  }
}
