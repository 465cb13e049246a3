/**
 * MIME facts (`needs: ['mime']`) through the public harness: the parts a rule sees
 * decoded, the cap, a message the parser gives up on, and no parse without the need.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadRule } from '../host/testing/harness.js';

let dir = '';
let mimeRule = '';
let bodyRule = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'portcullis-mime-'));
  mimeRule = join(dir, 'mime-log.ts');
  writeFileSync(mimeRule, `import { defineRule } from 'portcullis/sdk';
export default defineRule({ name: 'mime-log', needs: ['mime'], phases: { message: (ev, ctx) => {
  const m = ev.message.mime;
  ctx.log(JSON.stringify(m && { text: m.text, html: m.html, truncated: m.truncated, malformed: m.malformed }));
  ctx.log(JSON.stringify(m && m.attachments));
  const parts = m ? m.text.split('\\n\\n') : [];
  ctx.log(parts.length + ' text parts, the last ' + JSON.stringify(parts.pop()) + ', malformed ' + (m && m.malformed));
} } });
`);
  bodyRule = join(dir, 'body-log.ts');
  writeFileSync(bodyRule, `import { defineRule } from 'portcullis/sdk';
export default defineRule({ name: 'body-log', needs: ['body'], phases: { message: (ev, ctx) => ctx.log(String(ev.message.mime)) } });
`);
});
after(() => rmSync(dir, { recursive: true, force: true }));

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');

/** Text in ISO-8859-1 quoted-printable (with a soft line break), HTML in UTF-8 base64, three attachments. */
const MIXED = [
  'From: a@example.net', 'Subject: parts', 'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="mixed"', '',
  'preamble', '--mixed', 'Content-Type: multipart/alternative; boundary="alt"', '',
  '--alt', 'Content-Type: text/plain; charset=iso-8859-1', 'Content-Transfer-Encoding: quoted-printable', '', 'Gr=FC=DFe aus K=F6ln,', 'soft=', ' break', '',
  '--alt', 'Content-Type: text/html; charset=utf-8', 'Content-Transfer-Encoding: base64', '', b64('<p>Grüße</p>'), '--alt--',
  '--mixed', 'Content-Type: application/octet-stream', "Content-Disposition: attachment; filename*=utf-8''l%C3%B6ve.vbs", 'Content-Transfer-Encoding: base64', '', b64(Buffer.alloc(300, 1)),
  '--mixed', 'Content-Type: image/png', 'Content-Transfer-Encoding: base64', '', 'iVBORw0KGgo=',
  '--mixed', `Content-Type: text/plain; name="=?utf-8?B?${b64('notes ü.txt')}?="`, '', 'a text file', '--mixed--', '',
].join('\r\n');

async function factsOf(message: string, config: Record<string, unknown> = {}, rule = mimeRule): Promise<string[]> {
  await using h = await loadRule(rule, { config });
  const s = await h.connect({ ip: '192.0.2.50', helo: 'mx.example.net' });
  await s.mail('a@example.net');
  await s.rcpt('user@localhost');
  return (await s.message(message)).logs.slice(0, 2);
}

/** The third line the rule logs (the first is cut at 1,000 characters): how many text parts, the last, and malformed. */
async function textPartsOf(message: string): Promise<string | undefined> {
  await using h = await loadRule(mimeRule);
  const s = await h.connect({ ip: '192.0.2.51', helo: 'mx.example.net' });
  await s.mail('a@example.net');
  await s.rcpt('user@localhost');
  return (await s.message(message)).logs[2];
}

describe("needs: ['mime']", () => {
  it('gives the text and HTML parts decoded from their transfer encoding and charset, and every other part as an attachment', async () => {
    assert.deepEqual(await factsOf(MIXED), [
      '{"text":"Grüße aus Köln,\\r\\nsoft break\\r\\n","html":"<p>Grüße</p>","truncated":false,"malformed":false}',
      '[{"filename":"löve.vbs","contentType":"application/octet-stream","size":300},{"filename":null,"contentType":"image/png","size":8},{"filename":"notes ü.txt","contentType":"text/plain","size":11}]',
    ]);
  });

  it('reads a message without MIME headers as one text/plain part', async () => {
    assert.deepEqual(await factsOf('From: a@example.net\r\nSubject: hi\r\n\r\nplain body\r\n'), [
      '{"text":"plain body\\r\\n","html":"","truncated":false,"malformed":false}',
      '[]',
    ]);
  });

  it('reads no further than limits.bodyLimit: an attachment past it is cut, and truncated says so', async () => {
    const logs = await factsOf(MIXED, { limits: { bodyLimit: 700 } });
    assert.equal(logs[0], '{"text":"Grüße aus Köln,\\r\\nsoft break\\r\\n","html":"<p>Grüße</p>","truncated":true,"malformed":false}');
    const attachments = JSON.parse(logs[1]!) as { filename: string; size: number }[];
    assert.deepEqual(attachments.map((a) => a.filename), ['löve.vbs']);
    assert.ok(attachments[0]!.size < 300, `cut at the cap: ${attachments[0]!.size} bytes seen`);
  });

  it('a MIME bomb of 1,100 parts gives the parts read before the parser gave up, and malformed', async () => {
    const parts = Array.from({ length: 1100 }, (_, i) => `--b\r\nContent-Type: text/plain\r\n\r\n${i}\r\n`).join('');
    const bomb = `From: a@example.net\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n${parts}--b--\r\n`;
    // The splitter opens 1,000 parts at most: the multipart and 999 of its own.
    assert.equal(await textPartsOf(bomb), '999 text parts, the last "998", malformed true');
  });

  it('an unclosed multipart, bad base64 and an unknown charset are read as well as they can be, not flagged', async () => {
    const odd = ['From: a@example.net', 'Content-Type: multipart/mixed; boundary="z"', '', '--z', 'Content-Type: text/plain; charset=x-nonesuch', '', 'caf\u00e9 ok',
      '--z', 'Content-Type: application/zip; name="x.zip"', 'Content-Transfer-Encoding: base64', '', 'UEsD!!BBQAAAAgA', ''].join('\r\n');
    assert.deepEqual(await factsOf(odd), [
      '{"text":"café ok","html":"","truncated":false,"malformed":false}',
      '[{"filename":"x.zip","contentType":"application/zip","size":9}]',
    ]);
  });

  it('is not parsed when no rule needs it: mime is null', async () => {
    assert.deepEqual(await factsOf(MIXED, {}, bodyRule), ['null']);
  });
});
