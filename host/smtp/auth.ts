/** Password checks for SMTP AUTH: scrypt hashes (`scrypt$<salt hex>$<hash hex>`) or plain text. */
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import type { Config } from '../config/config.js';
import type { Reply } from './reply.js';

const scryptAsync = promisify(scrypt) as (pw: string, salt: Buffer, len: number) => Promise<Buffer>;

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  return `scrypt$${salt.toString('hex')}$${(await scryptAsync(password, salt, 32)).toString('hex')}`;
}

export async function verifyPassword(stored: string | undefined, given: string): Promise<boolean> {
  if (stored === undefined) return false;
  const m = /^scrypt\$([0-9a-f]+)\$([0-9a-f]+)$/.exec(stored);
  const [expected, actual] = m
    ? [Buffer.from(m[2]!, 'hex'), await scryptAsync(given, Buffer.from(m[1]!, 'hex'), m[2]!.length / 2)]
    : [Buffer.from(stored), Buffer.from(given)];
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

/** AUTH is offered only when the config has users to check passwords against. */
export function authOffered(c: Pick<Config, 'auth'>): boolean {
  return Object.keys(c.auth.users).length > 0;
}

/**
 * What the host answers an AUTH command before any password is looked at, or null when
 * it goes on to check one. smtp-server writes these lines itself (server.ts gives it AUTH
 * among its disabledCommands when `authOffered` is false); `portcullis try` shows them
 * from here, and test/cli.test.ts holds the two to the same line against a real host.
 */
export function authRefusal(c: Pick<Config, 'auth' | 'tls'>, conn: { tls: boolean; user: string | null }): Reply | null {
  // A disabled command is unknown to smtp-server: 500, as for any command it does not know.
  if (!authOffered(c)) return { code: 500, status: '5.2', text: 'Error: command not recognized' };
  // With a certificate, STARTTLS is offered, and a password must not cross in clear text
  // unless auth.allowInsecure says so (RFC 4954 §4: a server may require TLS for AUTH).
  if (c.tls && !conn.tls && !c.auth.allowInsecure) return { code: 538, status: '7.0', text: 'Error: Must issue a STARTTLS command first' };
  // RFC 4954 §4: after a successful AUTH, another AUTH is a bad sequence.
  if (conn.user) return { code: 503, status: '5.1', text: 'Error: No identity changes permitted' };
  return null;
}
