/**
 * The host's own log: pino, written off the SMTP path. JSON lines go to standard output
 * or a file through sonic-boom's asynchronous writer (a log line never costs the event
 * loop a blocking write); `format: "pretty"` formats in pino's transport worker thread.
 * A file is reopened on request (SIGUSR1, SIGHUP), so logrotate can move it away.
 */
import { pino, type Logger } from 'pino';
import type { Config } from './config/config.js';

export interface HostLog {
  log: Logger;
  /** Reopens the log file (after logrotate moved it); nothing for standard output. */
  reopen(): void;
  /** Writes out what is buffered: at exit. */
  flush(): void;
}

export function openHostLog(c: Config['log']): HostLog {
  if (c.format === 'pretty') {
    const transport = pino.transport({ target: 'pino-pretty', options: { destination: 1, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } });
    return { log: pino({ level: c.level }, transport), reopen: () => undefined, flush: () => transport.flushSync?.() };
  }
  const dest = pino.destination({ dest: c.file ?? 1, sync: false, mkdir: c.file !== null });
  return {
    log: pino({ level: c.level }, dest),
    reopen: () => {
      if (c.file) dest.reopen();
    },
    flush: () => {
      try {
        dest.flushSync();
      } catch {
        // nothing buffered, or the destination is gone: nothing more to do
      }
    },
  };
}
