/**
 * A real SpamAssassin spamd for the tests, on 127.0.0.1 at a free port (Debian packages
 * spamassassin, spamc, spamd; `.ci/run` installs them): local tests only (-L, no DNS or
 * network lookups), no user config (-x), as `nobody` when we are root.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect, createServer } from 'node:net';

export const SPAMD = '/usr/sbin/spamd';

/** Why the spamd tests cannot run here, or null. CI (PORTCULLIS_REQUIRE_SPAMD=1) fails instead of skipping. */
export function spamdMissing(): string | null {
  if (existsSync(SPAMD)) return null;
  const why = `${SPAMD} not installed (apt-get install spamassassin spamc spamd)`;
  if (process.env.PORTCULLIS_REQUIRE_SPAMD === '1') throw new Error(why);
  return why;
}

/** The GTUBE line (SpamAssassin's 20_body_tests.cf): any message carrying it scores 1000. */
export const GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X';

export interface Spamd {
  port: number;
  close(): Promise<void>;
}

/** A port free on 127.0.0.1 right now (for a server we spawn: it cannot be told to take port 0 and report it). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((ok) => s.listen(0, '127.0.0.1', () => ok()));
  const a = s.address();
  await new Promise<void>((ok) => s.close(() => ok()));
  return a && typeof a === 'object' ? a.port : 0;
}

export const accepts = (port: number): Promise<boolean> =>
  new Promise((ok) => {
    const c = connect({ host: '127.0.0.1', port }, () => (c.destroy(), ok(true)));
    c.on('error', () => ok(false));
  });

/** Starts spamd and waits until it accepts connections (it compiles its rules first: seconds). */
export async function startSpamd(): Promise<Spamd> {
  const port = await freePort();
  const args = ['--listen', `127.0.0.1:${port}`, '-L', '-x', '--max-children', '2', '--min-children', '1', '--syslog', 'stderr'];
  if (process.getuid?.() === 0) args.push('-u', 'nobody');
  const proc: ChildProcess = spawn(SPAMD, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const kill = (): void => void proc.kill('SIGTERM'); // TERM: spamd then stops its children too
  process.once('exit', kill);
  const deadline = Date.now() + 60_000;
  while (!(await accepts(port))) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`spamd did not start on port ${port}: ${stderr.slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    port,
    close: () =>
      new Promise<void>((ok) => {
        process.off('exit', kill);
        if (proc.exitCode !== null) return ok();
        proc.once('exit', () => ok());
        proc.kill('SIGTERM');
      }),
  };
}
