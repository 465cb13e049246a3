// Benchmark helpers that don't depend on Portcullis: drive Postfix's smtp-source,
// sample a process's RSS, start/stop a server process.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { connect as netConnect, createServer } from 'node:net';

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
export function startProcess(cmd, args, { readyPattern, readyPort, env, timeoutMs = 20_000 } = {}) {
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
      if (ready || !readyPattern) return;
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
    // A server that says nothing when it is ready (its log turned down): ready once it takes a connection.
    if (readyPort) {
      const probe = () => {
        if (ready) return;
        const sock = netConnect(readyPort, '127.0.0.1');
        sock.once('connect', () => {
          sock.destroy();
          if (ready) return;
          ready = true;
          clearTimeout(timer);
          resolve({ child, port: readyPort, stop });
        });
        sock.once('error', () => setTimeout(probe, 50));
      };
      probe();
    }
    child.on('error', (e) => fail(e.message));
    exited.then(({ code, signal }) => fail(`exited (${code ?? signal}) before ready`));
  });
}

/** CPU seconds (user + system) the process `pid` has used so far, from /proc/<pid>/stat. */
export function cpuSeconds(pid) {
  // Fields 14 and 15 (utime, stime) in clock ticks; the command name (field 2) may hold
  // spaces, so count from after its closing parenthesis. Linux's USER_HZ is 100.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

// Debian installs smtp-sink beside smtp-source.
export const SMTP_SINK = process.env.SMTP_SINK || SMTP_SOURCE.replace(/smtp-source$/, 'smtp-sink');

/**
 * Postfix's smtp-sink on 127.0.0.1:port, a next hop that accepts and discards everything
 * (pipelining, 8BITMIME; `man smtp-sink`); resolves { port, stop() } once it takes
 * connections. As root it must drop privileges (-u).
 */
export async function startSmtpSink(port) {
  const args = [...(process.getuid?.() === 0 ? ['-u', 'nobody'] : []), `127.0.0.1:${port}`, '1000'];
  const child = spawn(SMTP_SINK, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  running.add(child);
  let err = '';
  child.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((resolve) => child.on('close', () => { running.delete(child); resolve(); }));
  const stop = async () => { child.kill('SIGKILL'); await exited; };
  for (let i = 0; i < 100; i++) {
    if (await canConnect(port)) return { port, stop };
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  await stop();
  throw new Error(`smtp-sink ${args.join(' ')} did not start: ${err.trim()}`);
}

function canConnect(port) {
  return new Promise((resolve) => {
    const s = netConnect({ port, host: '127.0.0.1' }, () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  });
}

/** A free TCP port on 127.0.0.1 (the kernel's pick). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
    srv.on('error', reject);
  });
}

/**
 * Starts a server with `start()`, warms it up (JIT, pools), then runs `scenario` through
 * smtp-source, or through `send({ port, ...scenario })` when given (a client sending
 * messages of its own; it warms up on 200 of them): msgs/s, peak RSS (MB) and server
 * CPU in cores over the measured run.
 */
export async function measureLoad(start, scenario, send = null) {
  const srv = await start();
  try {
    if (send) await send({ port: srv.port, ...scenario, messages: Math.min(200, scenario.messages) });
    else await runSmtpSource({ port: srv.port, messages: 500, perConnection: true, sizeBytes: 1024 });
    const rss = sampleRss(srv.child.pid);
    const cpu0 = cpuSeconds(srv.child.pid);
    const r = await (send ?? runSmtpSource)({ port: srv.port, ...scenario });
    return { rate: r.msgsPerSec, rss: rss.stop(), cores: (cpuSeconds(srv.child.pid) - cpu0) / r.seconds };
  } finally {
    await srv.stop();
  }
}
