/**
 * SMTP AUTH passwords (RFC 4954) are kept in the config as scrypt hashes (RFC 7914), never
 * as the password itself. This file is the one home of the format, which carries its own
 * cost parameters so stronger ones can be chosen later without breaking the hashes in use:
 *
 *   scrypt$<N>$<r>$<p>$<salt, hex>$<derived key, hex>
 *   scrypt$32768$8$1$5f0c…(32 hex digits)$9a1e…(64 hex digits)
 *
 * `portcullis passwd` makes one; the config loader refuses anything else (a plain-text
 * password included) by the user's name; the SMTP adapter checks a login against it.
 */
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

export interface ScryptParams {
  /** CPU/memory cost, a power of two. */
  N: number;
  /** Block size. */
  r: number;
  /** Parallelisation. */
  p: number;
}

/**
 * What `portcullis passwd` uses: about 100 ms and 32 MiB per check on the project's VM.
 * AUTH is open to the internet and each attempt costs one check (on libuv's thread pool,
 * not the event loop); `auth-brute-force` blacklists a client after a few failures.
 */
export const SCRYPT_DEFAULTS: ScryptParams = { N: 2 ** 15, r: 8, p: 1 };

/**
 * Bounds a hash's parameters must keep, so a mistyped config cannot make each AUTH take
 * gigabytes: scrypt holds about 128·N·r bytes (256 MiB allows OWASP's N=2^17, r=8).
 */
const MAX = { memory: 256 * 1024 * 1024, r: 32, p: 16 };

/** The printable form, for messages: `scrypt$N$r$p$salt$hash`. */
export const PASSWORD_HASH_FORMAT = 'scrypt$N$r$p$salt$hash';

const HASH_RE = /^scrypt\$(\d{1,8})\$(\d{1,3})\$(\d{1,3})\$((?:[0-9a-f]{2}){8,64})\$((?:[0-9a-f]{2}){16,64})$/;

export interface PasswordHash extends ScryptParams {
  salt: Buffer;
  key: Buffer;
}

/** The parts of a stored hash, or null when `stored` is not one (a plain-text password, a typo). */
export function parsePasswordHash(stored: string): PasswordHash | null {
  const m = HASH_RE.exec(stored);
  if (!m) return null;
  const [N, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const powerOfTwo = N > 1 && (N & (N - 1)) === 0;
  if (!powerOfTwo || r < 1 || r > MAX.r || p < 1 || p > MAX.p || 128 * N * r > MAX.memory) return null;
  return { N, r, p, salt: Buffer.from(m[4]!, 'hex'), key: Buffer.from(m[5]!, 'hex') };
}

function derive(password: string, salt: Buffer, length: number, o: ScryptParams): Promise<Buffer> {
  // Node refuses above 32 MiB by default; scrypt needs about 128·N·r bytes.
  const options: ScryptOptions = { N: o.N, r: o.r, p: o.p, maxmem: 256 * o.N * o.r + 1024 * 1024 };
  // NFKC is the normalisation of SASLprep (RFC 4013, which RFC 4954 asks for): a password
  // typed as composed or decomposed characters is the same password.
  return new Promise((ok, fail) => scrypt(password.normalize('NFKC'), salt, length, options, (e, key) => (e ? fail(e) : ok(key))));
}

/** A new hash of `password` with a random salt, in the format above. */
export async function hashPassword(password: string, params: ScryptParams = SCRYPT_DEFAULTS): Promise<string> {
  const salt = randomBytes(16);
  const key = await derive(password, salt, 32, params);
  return `scrypt$${params.N}$${params.r}$${params.p}$${salt.toString('hex')}$${key.toString('hex')}`;
}

/** Stands in for a user who does not exist, so an unknown name costs as long as a wrong password. */
const NOBODY: PasswordHash = { ...SCRYPT_DEFAULTS, salt: randomBytes(16), key: randomBytes(32) };

/**
 * Whether `given` is the password behind `stored` (undefined: no such user). Compared in
 * constant time; a user who does not exist takes the same scrypt work as one who does.
 */
export async function verifyPassword(stored: string | undefined, given: string): Promise<boolean> {
  const h = (stored !== undefined && parsePasswordHash(stored)) || NOBODY;
  const actual = await derive(given, h.salt, h.key.length, h);
  return h !== NOBODY && timingSafeEqual(actual, h.key);
}
