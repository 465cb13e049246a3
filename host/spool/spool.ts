/**
 * The durable spool: one `<id>.eml` (the message, exactly as it will be delivered) and
 * one `<id>.json` (its envelope) per message. Both are written under tmp/, fsync'ed,
 * renamed into new/ (envelope first, so an .eml in new/ always has its envelope) and the
 * directory is fsync'ed — all before the client hears 250.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';

export interface SpoolEnvelope {
  id: string;
  receivedAt: string;
  client: { ip: string; port: number; helo: string | null; ptr: string | null; user: string | null };
  mailFrom: string;
  rcptTo: string[];
  /** For quarantine and redirect: which rule decided and why. */
  disposition?: { action: string; rule: string | null; reason: string | null; originalRcptTo?: string[] };
}

export type SpoolArea = 'spool' | 'quarantine';

/** Sortable, unique message id: time then randomness. */
export function newMessageId(): string {
  return `${Date.now().toString(36).toUpperCase()}${randomBytes(5).toString('hex').toUpperCase()}`;
}

async function writeSynced(path: string, parts: (Buffer | string)[]): Promise<void> {
  const fh = await open(path, 'wx', 0o640);
  try {
    for (const p of parts) {
      // write() may write less than asked (a disk filling up): loop until all is written,
      // so a short write surfaces as the ENOSPC of the next attempt, never as a short file.
      const buf = typeof p === 'string' ? Buffer.from(p) : p;
      for (let off = 0; off < buf.length; ) {
        const { bytesWritten } = await fh.write(buf, off);
        if (bytesWritten === 0) throw Object.assign(new Error(`no space left writing ${path}`), { code: 'ENOSPC' });
        off += bytesWritten;
      }
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export class Spool {
  constructor(private readonly dataDir: string) {
    for (const area of ['spool', 'quarantine'] as const) {
      for (const sub of ['tmp', 'new']) mkdirSync(join(dataDir, area, sub), { recursive: true });
    }
  }

  dir(area: SpoolArea): string {
    return join(this.dataDir, area, 'new');
  }

  /** Stores a message durably; on any error nothing is left behind and the error is thrown. */
  async store(area: SpoolArea, env: SpoolEnvelope, message: (Buffer | string)[]): Promise<string> {
    const tmp = join(this.dataDir, area, 'tmp');
    const dest = this.dir(area);
    const names = [`${env.id}.json`, `${env.id}.eml`];
    try {
      await writeSynced(join(tmp, names[0]!), [JSON.stringify(env, null, 2) + '\n']);
      await writeSynced(join(tmp, names[1]!), message);
      for (const n of names) await rename(join(tmp, n), join(dest, n));
      await syncDir(dest);
      return join(dest, names[1]!);
    } catch (e) {
      await Promise.all(names.flatMap((n) => [join(tmp, n), join(dest, n)].map((p) => unlink(p).catch(() => undefined))));
      throw e;
    }
  }
}
