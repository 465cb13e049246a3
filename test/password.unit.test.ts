/** AUTH password hashes: the format `portcullis passwd` prints, and a config that holds anything else is refused. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, configFrom } from '../host/config/config.js';
import { hashPassword, parsePasswordHash, SCRYPT_DEFAULTS, verifyPassword } from '../host/password.js';

const CHEAP = { N: 1024, r: 8, p: 1 };

describe('password hashes', () => {
  it('carry their scrypt parameters, a 16-byte salt and a 32-byte key', async () => {
    const h = await hashPassword('correct horse');
    assert.match(h, /^scrypt\$32768\$8\$1\$[0-9a-f]{32}\$[0-9a-f]{64}$/);
    assert.deepEqual({ ...parsePasswordHash(h), salt: undefined, key: undefined }, { ...SCRYPT_DEFAULTS, salt: undefined, key: undefined });
  });

  it('verify the password they were made from, and nothing else', async () => {
    const h = await hashPassword('correct horse', CHEAP);
    assert.equal(await verifyPassword(h, 'correct horse'), true);
    assert.equal(await verifyPassword(h, 'correct horse '), false);
    assert.equal(await verifyPassword(h, ''), false);
    assert.equal(await verifyPassword(undefined, 'correct horse'), false, 'no such user');
    assert.notEqual(await hashPassword('correct horse', CHEAP), h, 'a new salt each time');
  });

  it('treat composed and decomposed characters as the same password (SASLprep normalises with NFKC)', async () => {
    const h = await hashPassword('caf\u00e9', CHEAP);
    assert.equal(await verifyPassword(h, 'cafe\u0301'), true);
  });

  it('are refused when malformed or with parameters out of bounds', () => {
    const salt = '00'.repeat(16);
    const key = '11'.repeat(32);
    for (const bad of ['secret', `scrypt$${salt}$${key}`, `scrypt$1000$8$1$${salt}$${key}`, `scrypt$2097152$8$1$${salt}$${key}`, `scrypt$1024$0$1$${salt}$${key}`, `scrypt$1024$8$1$${salt}$abc`]) {
      assert.equal(parsePasswordHash(bad), null, bad);
    }
    assert.notEqual(parsePasswordHash(`scrypt$1024$8$1$${salt}$${key}`), null);
  });
});

describe('auth.users in the config', () => {
  const problems = (users: Record<string, string>): string[] => {
    try {
      configFrom({ auth: { users } }, 'mx.json');
      return [];
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      return e.problems;
    }
  };

  it('takes scrypt hashes', async () => {
    assert.deepEqual(problems({ alice: await hashPassword('pw', CHEAP) }), []);
  });

  it('refuses a plain-text password by the user name, and says how to make a hash', () => {
    assert.deepEqual(problems({ alice: 'secret', 'ops/bot': 'x' }), [
      '/auth/users/alice: a plain-text password; only scrypt hashes are accepted: run "portcullis passwd alice" and put the line it prints here',
      '/auth/users/ops~1bot: a plain-text password; only scrypt hashes are accepted: run "portcullis passwd ops/bot" and put the line it prints here',
    ]);
  });

  it('refuses a damaged hash as one', () => {
    assert.deepEqual(problems({ alice: 'scrypt$32768$8$1$00$11' }), [
      '/auth/users/alice: not a valid password hash (scrypt$N$r$p$salt$hash): run "portcullis passwd alice" and put the line it prints here',
    ]);
  });
});
