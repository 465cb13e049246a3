/**
 * The pure pieces of the spamd and header-removal facts: reading spamd's answer to
 * SYMBOLS (spamd/PROTOCOL), and taking fields out of a message's header (RFC 5322 §2.2.3
 * folding) without touching its body.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseSymbolsAnswer } from '../host/content/spamd.js';
import { withoutFields } from '../host/delivery/header.js';

describe('parseSymbolsAnswer', () => {
  const cases: [string, string, ReturnType<typeof parseSymbolsAnswer>][] = [
    ['spam', 'SPAMD/1.1 0 EX_OK\r\nContent-length: 18\r\nSpam: True ; 1002.5 / 5.0\r\n\r\nGTUBE,MISSING_DATE', { score: 1002.5, threshold: 5, isSpam: true, symbols: ['GTUBE', 'MISSING_DATE'] }],
    ['ham', 'SPAMD/1.1 0 EX_OK\r\nContent-length: 10\r\nSpam: False ; -0.1 / 5.0\r\n\r\nNO_RELAYS\r\n', { score: -0.1, threshold: 5, isSpam: false, symbols: ['NO_RELAYS'] }],
    ['no tests hit', 'SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: False ; 0.0 / 5.0\r\n\r\n', { score: 0, threshold: 5, isSpam: false, symbols: [] }],
    ['a spamd error', 'SPAMD/1.0 76 Bad header line: FOO\r\n', { error: 'spamd: 76 Bad header line: FOO' }],
    ['no Spam: header', 'SPAMD/1.1 0 EX_OK\r\n\r\n', { error: 'spamd: its answer has no Spam: header' }],
    ['not spamd', 'HTTP/1.1 400 Bad Request\r\n\r\n', { error: 'spamd: not a SPAMD answer: "HTTP/1.1 400 Bad Request\\r\\n\\r\\n"' }],
    ['nothing', '', { error: 'spamd: not a SPAMD answer: ""' }],
  ];
  for (const [what, raw, want] of cases) it(`reads ${what}`, () => assert.deepEqual(parseSymbolsAnswer(raw), want));
});

describe('withoutFields', () => {
  const msg = Buffer.from('Subject: hi\r\nX-Spam-Status: Yes,\r\n\tscore=9.0\r\nFrom: a@b\r\nx-spam-flag: YES\r\n\r\nX-Spam-Status: in the body stays\r\n');
  it('removes each named field with its continuation lines, any case, and leaves the body alone', () => {
    assert.equal(withoutFields(msg, ['x-spam-status', 'x-spam-flag']).toString(), 'Subject: hi\r\nFrom: a@b\r\n\r\nX-Spam-Status: in the body stays\r\n');
  });
  it('returns the message itself when nothing is removed', () => {
    assert.equal(withoutFields(msg, []), msg);
    assert.equal(withoutFields(msg, ['received']).toString(), msg.toString());
  });
});
