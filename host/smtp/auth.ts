/** Password checks for SMTP AUTH: scrypt hashes (`scrypt$<salt hex>$<hash hex>`) or plain text. */
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';

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
