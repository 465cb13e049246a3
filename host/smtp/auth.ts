/**
 * Whether and how the host answers AUTH before any password is checked: one home for the
 * decision, read by the SMTP adapter (server.ts) and `portcullis try`. The passwords
 * themselves: ../password.ts.
 */
import type { Config } from '../config/config.js';
import type { Reply } from './reply.js';

/** AUTH is offered only when the config has users to check passwords against. */
export function authOffered(c: Pick<Config, 'auth'>): boolean {
  return Object.keys(c.auth.users).length > 0;
}

/**
 * What the host answers an AUTH command before any password is looked at, or null when
 * it goes on to check one. smtp-server writes these lines itself (server.ts gives it AUTH
 * among its disabledCommands when `authOffered` is false); `portcullis try` shows them
 * from here, and test/cli-admin.test.ts holds the two to the same line against a real host.
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
