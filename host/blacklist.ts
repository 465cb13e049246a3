/**
 * The internal short-term blacklist (MercuryS/SmtpEvt): clients refused at connect until
 * their entry expires. In memory for now, behind this interface so the SQLite store can
 * replace it.
 */
export interface BlacklistEntry {
  ip: string;
  reason: string;
  rule: string;
  created: number;
  expires: number;
}

export interface Blacklist {
  add(ip: string, ttlSeconds: number, reason: string, rule: string): void;
  /** The live entry for ip, or undefined (expired entries are dropped on lookup). */
  get(ip: string, now?: number): BlacklistEntry | undefined;
  list(now?: number): BlacklistEntry[];
  remove(ip: string): boolean;
}

export class MemoryBlacklist implements Blacklist {
  private entries = new Map<string, BlacklistEntry>();

  add(ip: string, ttlSeconds: number, reason: string, rule: string): void {
    const now = Date.now();
    this.entries.set(ip, { ip, reason, rule, created: now, expires: now + ttlSeconds * 1000 });
  }

  get(ip: string, now = Date.now()): BlacklistEntry | undefined {
    const e = this.entries.get(ip);
    if (e && e.expires <= now) {
      this.entries.delete(ip);
      return undefined;
    }
    return e;
  }

  list(now = Date.now()): BlacklistEntry[] {
    return [...this.entries.keys()].map((ip) => this.get(ip, now)).filter((e): e is BlacklistEntry => !!e);
  }

  remove(ip: string): boolean {
    return this.entries.delete(ip);
  }
}
