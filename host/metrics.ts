/** In-process counters, labelled; the admin issue exposes them (Prometheus text format). */
export class Counters {
  private values = new Map<string, number>();

  inc(name: string, labels: Record<string, string> = {}, by = 1): void {
    const key = keyOf(name, labels);
    this.values.set(key, (this.values.get(key) ?? 0) + by);
  }

  /** A gauge: sets the value instead of adding to it. */
  set(name: string, labels: Record<string, string>, value: number): void {
    this.values.set(keyOf(name, labels), value);
  }

  get(name: string, labels: Record<string, string> = {}): number {
    return this.values.get(keyOf(name, labels)) ?? 0;
  }

  snapshot(): Record<string, number> {
    return Object.fromEntries(this.values);
  }
}

/** Prometheus-style key: name{a="x",b="y"} (labels in the order given). */
function keyOf(name: string, labels: Record<string, string>): string {
  let key = name;
  let sep = '{';
  for (const k in labels) {
    key += `${sep}${k}="${labels[k]}"`;
    sep = ',';
  }
  return sep === '{' ? key : key + '}';
}
