// Benchmark helpers that don't depend on Portcullis: drive Postfix's smtp-source,
// sample a process's RSS, start/stop a server process.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

// Debian installs smtp-source in /usr/sbin, which is often not on a non-root PATH.
export const SMTP_SOURCE =
  process.env.SMTP_SOURCE || (existsSync('/usr/sbin/smtp-source') ? '/usr/sbin/smtp-source' : 'smtp-source');

/**
 * Runs smtp-source against 127.0.0.1:port and returns { msgs, seconds, msgsPerSec }.
 * smtp-source flags (Postfix 3.7, see `man smtp-source`):
 *   -s N   parallel sessions          -m N  total messages (over all sessions)
 *   -l N   payload bytes (excl. headers; sent as ~78-char lines)
 *   -r N   recipients per message: <rcpt@localhost>, <2rcpt@localhost>, ... (a number
 *          is prepended to the local part, so every address stays in domain localhost)
 *   -d     DON'T disconnect after a message, i.e. many messages per connection.
 *          Without -d smtp-source opens a new connection (and QUITs) per message.
 *   -f/-t  sender/recipient, -M  HELO name (also the default address domain)
 * It is silent on success; any failure (refused connection, non-2xx reply) is a
 * "fatal:" line on stderr and exit status 1, so any stderr output is treated as failure.
 */
export async function runSmtpSource({ port, sessions = 20, messages, perConnection, sizeBytes, recipients = 1, timeoutMs = 300_000 }) {
  const args = ['-s', String(sessions), '-m', String(messages), '-l', String(sizeBytes), '-r', String(recipients),
    '-f', 'bench@localhost', '-t', 'rcpt@localhost', '-M', 'localhost'];
  if (perConnection) args.push('-d');
  args.push(`127.0.0.1:${port}`);

  const t0 = process.hrtime.bigint();
  const child = spawn(SMTP_SOURCE, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs); // never hang a run
  const { code, signal } = await new Promise((resolve, reject) => {
    child.on('error', reject); // e.g. ENOENT: smtp-source not installed
    child.on('close', (code, signal) => resolve({ code, signal }));
  }).finally(() => clearTimeout(timer));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;

  if (code !== 0 || stderr.trim()) {
    const why = signal === 'SIGKILL' ? `timed out after ${timeoutMs} ms` : `exit ${code ?? signal}`;
    throw new Error(`smtp-source ${args.join(' ')} failed (${why}): ${stderr.trim()}`);
  }
  return { msgs: messages, seconds, msgsPerSec: messages / seconds };
}

/** Samples VmRSS of pid every 50 ms; stop() returns the peak in MB. */
export function sampleRss(pid) {
  let peakKb = 0;
  const sample = () => {
    try {
      const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) peakKb = Math.max(peakKb, Number(m[1]));
    } catch { /* process gone: keep the last peak */ }
  };
  sample();
  const timer = setInterval(sample, 50);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      sample();
      return peakKb / 1024;
    },
  };
}

const running = new Set();
// Don't leave servers behind if the benchmark itself dies or is interrupted.
process.on('exit', () => { for (const c of running) c.kill('SIGKILL'); });

/**
 * Spawns cmd and resolves { child, port, stop() } once readyPattern matches stdout
 * (capture group 1, if any, is parsed as the port). Rejects after timeoutMs (20 s),
 * or if the process exits first. stop() sends SIGTERM, SIGKILL after 5 s, and
 * resolves with { code, signal } once the process has exited.
 */
export function startProcess(cmd, args, { readyPattern, env, timeoutMs = 20_000 } = {}) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  running.add(child);
  const exited = new Promise((resolve) => {
    const done = (code, signal) => { running.delete(child); resolve({ code, signal }); };
    child.on('exit', done);
    child.on('close', done); // a failed spawn (ENOENT) emits 'close' but no 'exit'
  });

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited.finally(() => clearTimeout(t));
    }
    return exited;
  };

  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    let ready = false;
    // Both pipes are drained for the child's whole life: a full pipe would block it.
    child.stderr.on('data', (d) => { err = (err + d).slice(-4000); });
    child.stdout.on('data', (d) => {
      if (ready) return;
      out += d;
      const m = readyPattern.exec(out);
      if (!m) return;
      ready = true;
      clearTimeout(timer);
      resolve({ child, port: m[1] !== undefined ? Number(m[1]) : undefined, stop });
    });
    const fail = (msg) => {
      if (ready) return;
      ready = true;
      clearTimeout(timer);
      stop().finally(() => reject(new Error(`${cmd} ${args.join(' ')}: ${msg}\nstdout: ${out.slice(-2000)}\nstderr: ${err}`)));
    };
    const timer = setTimeout(() => fail(`not ready after ${timeoutMs} ms`), timeoutMs);
    child.on('error', (e) => fail(e.message));
    exited.then(({ code, signal }) => fail(`exited (${code ?? signal}) before ready`));
  });
}
