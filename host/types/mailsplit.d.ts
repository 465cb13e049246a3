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

declare module 'mailsplit/lib/message-splitter.js' {
  import type { Transform } from 'node:stream';
  /** One MIME part, emitted once its header block is read (`type: 'node'`). */
  export interface MimeNode {
    type: 'node';
    /** Lower case (`text/plain` when the part has no Content-Type), or false. */
    contentType: string | false;
    charset: string | false;
    /** Lower case (`attachment`, `inline`), or false. */
    disposition: string | false;
    /** Content-Disposition's filename or Content-Type's name, decoded (RFC 2231, RFC 2047), or false. */
    filename: string | false;
    /** The multipart subtype (`mixed`, `alternative`…), or false for a leaf. */
    multipart: string | false;
    /** True for an inline message/rfc822 whose own parts follow as nodes. */
    messageNode?: boolean;
    /** A transform stream that undoes the part's Content-Transfer-Encoding. */
    getDecoder(): Transform;
  }
  /** A line of a part's body (`body`), or of a multipart's preamble, boundaries and epilogue (`data`). */
  export interface BodyChunk {
    type: 'body' | 'data' | 'none';
    node: MimeNode;
    value: Buffer;
  }
  export default class Splitter extends Transform {
    constructor(config?: { maxHeadSize?: number; maxChildNodes?: number });
    on(event: 'data', listener: (chunk: MimeNode | BodyChunk) => void): this;
    on(event: string, listener: (...args: any[]) => void): this;
  }
}
