/**
 * `portcullis passwd [USER]`: reads a password and prints its scrypt hash, the string
 * `auth.users.USER` takes in the config (host/password.ts has the format). The password
 * comes from the terminal (not echoed, asked twice) or, when stdin is not a terminal,
 * from its first line, so a script can do `portcullis passwd alice < pwfile`.
 */
import { parseArgs } from 'node:util';
import { hashPassword } from '../password.js';

export async function passwd(argv: string[], input: NodeJS.ReadStream = process.stdin, out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): Promise<number> {
  const { positionals } = parseArgs({ args: argv, allowPositionals: true, strict: true });
  if (positionals.length > 1) {
    err.write('portcullis: passwd takes at most one user name\n');
    return 64; // EX_USAGE
  }
  const user = positionals[0];
  let password: string | null;
  if (input.isTTY) {
    const typed = { rest: '' };
    const first = await readHidden(input, err, user ? `Password for ${user}: ` : 'Password: ', typed);
    const again = first === null ? null : await readHidden(input, err, 'Again: ', typed);
    if (first === null || again === null) return 130; // interrupted
    if (first !== again) {
      err.write('portcullis: the passwords differ; nothing printed\n');
      return 1;
    }
    password = first;
  } else {
    password = firstLine(await readAll(input));
  }
  if (!password) {
    err.write(`portcullis: empty password${input.isTTY ? '' : ' (passwd reads the first line of standard input)'}; nothing printed\n`);
    return 1;
  }
  const hash = await hashPassword(password);
  out.write(`${hash}\n`);
  if (input.isTTY && user) err.write(`put it in the config: "auth": { "users": { ${JSON.stringify(user)}: "<the line above>" } }, then reload\n`);
  return 0;
}

/** The first line, without its line ending (LF or CRLF); the rest is ignored. */
function firstLine(text: string): string {
  return text.split('\n', 1)[0]!.replace(/\r$/, '');
}

async function readAll(input: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of input) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c));
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Reads one line from a terminal in raw mode, echoing nothing; null on Ctrl-C, Ctrl-D or
 * end of input. What was typed ahead past the line stays in `typed` for the next call.
 */
function readHidden(input: NodeJS.ReadStream, err: NodeJS.WritableStream, prompt: string, typed: { rest: string }): Promise<string | null> {
  err.write(prompt);
  input.setRawMode(true);
  return new Promise((ok) => {
    let line = '';
    const finish = (v: string | null): void => {
      input.off('data', onData);
      input.off('end', onEnd);
      input.setRawMode(false);
      input.pause();
      err.write('\n');
      ok(v);
    };
    const take = (text: string): boolean => {
      const chars = [...text];
      for (let i = 0; i < chars.length; i++) {
        const ch = chars[i]!;
        if (ch === '\r' || ch === '\n') {
          // A CRLF typed ahead (canonical mode before raw mode was set) is one line end.
          typed.rest = chars.slice(ch === '\r' && chars[i + 1] === '\n' ? i + 2 : i + 1).join('');
          finish(line);
          return true;
        }
        if (ch === '\u0003' || (ch === '\u0004' && !line)) {
          finish(null);
          return true;
        }
        if (ch === '\u007f' || ch === '\b') line = [...line].slice(0, -1).join('');
        else if (ch >= ' ') line += ch;
      }
      return false;
    };
    const onData = (d: Buffer): void => void take(d.toString('utf8'));
    const onEnd = (): void => finish(null);
    const ahead = typed.rest;
    typed.rest = '';
    if (take(ahead)) return;
    input.on('data', onData);
    input.on('end', onEnd);
    input.resume();
  });
}
