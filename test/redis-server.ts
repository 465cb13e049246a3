/**
 * A real redis-server for the tests, on 127.0.0.1 at a free high port, with no
 * persistence (Debian's redis-server; `.ci/run` installs it and sets
 * PORTCULLIS_REQUIRE_REDIS=1). It can be paused (SIGSTOP: a Redis that stops answering,
 * the worst outage: connections stay open, commands time out) and resumed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { accepts, freePort } from './spamd-server.js';

export const REDIS_SERVER = '/usr/bin/redis-server';

/** Why the Redis tests cannot run here, or null. CI (PORTCULLIS_REQUIRE_REDIS=1) fails instead of skipping. */
export function redisMissing(): string | null {
  if (existsSync(REDIS_SERVER)) return null;
  const why = `${REDIS_SERVER} not installed (apt-get install redis-server)`;
  if (process.env.PORTCULLIS_REQUIRE_REDIS === '1') throw new Error(why);
  return why;
}

export interface RedisServer {
  port: number;
  url: string;
  /** Stops it answering (SIGSTOP) until `resume`. */
  pause(): void;
  resume(): void;
  /** Kills it and starts a new one on the same port: empty, as a Redis without persistence comes back. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

/** Starts redis-server on `port` and waits until it accepts connections. */
async function spawnRedis(port: number): Promise<ChildProcess> {
  const proc = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  for (const s of [proc.stdout, proc.stderr]) s.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-4000)));
  const deadline = Date.now() + 20_000;
  while (!(await accepts(port))) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`redis-server did not start on port ${port}: ${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return proc;
}

const exited = (proc: ChildProcess): Promise<void> => new Promise((ok) => (proc.exitCode !== null || proc.signalCode !== null ? ok() : proc.once('exit', () => ok())));

/** Starts redis-server on a free port. */
export async function startRedis(): Promise<RedisServer> {
  const port = await freePort();
  let proc = await spawnRedis(port);
  const kill = (): void => void proc.kill('SIGKILL');
  process.once('exit', kill);
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    pause: () => void proc.kill('SIGSTOP'),
    resume: () => void proc.kill('SIGCONT'),
    restart: async () => {
      proc.kill('SIGKILL');
      await exited(proc);
      proc = await spawnRedis(port);
    },
    close: async () => {
      process.off('exit', kill);
      proc.kill('SIGCONT');
      proc.kill('SIGTERM');
      await exited(proc);
    },
  };
}
