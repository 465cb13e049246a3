/** In-process counters, labelled; the admin issue exposes them (Prometheus text format). */
export class Counters {
  private values = new Map<string, number>();

  inc(name: string, labels: Record<string, string> = {}, by = 1): void {
    const key = `${name}${Object.keys(labels).length ? JSON.stringify(labels) : ''}`;
    this.values.set(key, (this.values.get(key) ?? 0) + by);
  }

  get(name: string, labels: Record<string, string> = {}): number {
    return this.values.get(`${name}${Object.keys(labels).length ? JSON.stringify(labels) : ''}`) ?? 0;
  }

  snapshot(): Record<string, number> {
    return Object.fromEntries(this.values);
  }
}
