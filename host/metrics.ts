/**
 * Every metric the host keeps, in one catalogue: its name, type, help and labels. Call
 * sites name metrics and labels from it (`metrics.inc('rule_verdicts_total', { rule,
 * phase, action, mode })`), so a misspelt metric, a missing or unknown label, or a label
 * value outside a listed set does not compile. The admin listener serves them in the
 * Prometheus text format (host/admin), each name prefixed `portcullis_`.
 *
 * Each host has a prom-client Registry of its own, never prom-client's global one: tests
 * (and the rule harness) run several hosts in one process. The host owns its Metrics, not
 * the RuleSet, so counts go on across hot reloads.
 */
import { Counter, Gauge, Registry } from 'prom-client';
import { FastHistogram } from './metrics-histogram.js';
import { PHASES, type Action } from '../sdk/index.js';

/** What every metric's name starts with on /metrics (the catalogue's names go without it). */
export const METRIC_PREFIX = 'portcullis_';

/**
 * A label whose values are not listed here: a rule's name, a DNS zone, or a closed set
 * defined in a module this leaf may not import (it would make an import cycle). `T` still
 * types what call sites pass.
 */
interface Open<T extends string> {
  readonly open: true;
  /** Never set: carries `T` for the type checker. */
  readonly values?: T;
}
const open = <T extends string = string>(): Open<T> => ({ open: true });

/** A label's values: listed (series for every combination exist from the start, at 0), or open. */
type LabelValues = readonly string[] | Open<string>;
type LabelSpec = Readonly<Record<string, LabelValues>>;

interface MetricDef<T extends 'counter' | 'gauge' | 'histogram', L extends LabelSpec> {
  type: T;
  help: string;
  labels: L;
  /** Histograms only: bucket upper bounds, in the metric's unit. */
  buckets?: readonly number[];
  /** Gauges: how a cluster's primary combines the workers' values on /metrics (default: their sum). */
  cluster?: 'max' | 'min';
}

const counter = <const L extends LabelSpec>(help: string, labels: L): MetricDef<'counter', L> => ({ type: 'counter', help, labels });
const gauge = <const L extends LabelSpec>(help: string, labels: L, cluster?: 'max' | 'min'): MetricDef<'gauge', L> => ({ type: 'gauge', help, labels, ...(cluster ? { cluster } : {}) });
const histogram = <const L extends LabelSpec>(help: string, labels: L, buckets: readonly number[]): MetricDef<'histogram', L> => ({ type: 'histogram', help, labels, buckets });

/** Reply code classes (`replies_total{class}`). */
export const REPLY_CLASSES = ['2xx', '3xx', '4xx', '5xx'] as const;
export type ReplyClass = (typeof REPLY_CLASSES)[number];

/** The class of an SMTP reply code (RFC 5321 §4.2.1: the first digit). */
export function replyClass(code: number): ReplyClass {
  return `${Math.min(5, Math.max(2, Math.floor(code / 100))) as 2 | 3 | 4 | 5}xx`;
}

/**
 * Rule call latency buckets, in seconds: a call costs 20–80 µs when all is well (DESIGN.md),
 * and the default deadline is 50 ms; a call queued behind a busy worker lands in between.
 */
const RULE_CALL_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25];

/** The catalogue: every metric the host keeps. README's "Metrics" section lists them all (test/metrics.test.ts checks). */
export const METRICS = {
  // --- rules, per rule and phase ---------------------------------------------------------
  rule_call_duration_seconds: histogram('Time a rule call took, by rule and phase (its _count is the number of calls, failures included)', { rule: open(), phase: PHASES }, RULE_CALL_BUCKETS),
  rule_verdicts_total: counter('Verdicts other than next (and next verdicts with effects), by rule, phase, action and mode (enforce, or shadow: what it would have done)', { rule: open(), phase: PHASES, action: open<Action>(), mode: ['enforce', 'shadow'] }),
  rule_failures_total: counter('Rule calls that failed, by rule, phase and outcome (timeout, oom, stack-overflow, error, invalid-verdict, crash)', { rule: open(), phase: PHASES, outcome: open() }),
  replies_refused_total: counter('Commands refused, by phase and the rule that decided (relay-control, or host for the host\'s own refusals)', { phase: PHASES, rule: open() }),
  notes_refused_total: counter('Note writes refused for exceeding the notes size limit', {}),
  // --- SMTP ------------------------------------------------------------------------------
  sessions_total: counter('SMTP sessions opened (connections that got as far as the connect phase)', {}),
  sessions_open: gauge('SMTP sessions open now', {}),
  replies_total: counter('SMTP replies sent, by code class', { class: REPLY_CLASSES }),
  received_bytes_total: counter('Bytes of message data received after DATA, whatever became of the message', {}),
  messages_total: counter('Messages accepted, by disposition', { disposition: ['deliver', 'redirect', 'discard', 'quarantine'] }),
  internal_errors_total: counter('Unexpected host errors answered 451 4.3.0', {}),
  checker_results_total: counter('External checker results', { result: ['accept', 'reject', 'tempfail'] }),
  // --- delivery --------------------------------------------------------------------------
  delivery_queue_messages: gauge('Messages in the spool waiting for delivery (held ones included)', {}),
  deliveries_total: counter('Delivery results per recipient, by path (queue, or relay during DATA) and result', { path: ['queue', 'relay'], result: ['delivered', 'deferred', 'refused', 'bounced', 'failed'] }),
  bounces_total: counter('Bounce messages spooled', {}),
  spool_failures_total: counter('Messages the spool could not take (answered 452)', {}),
  // --- store and DNS ---------------------------------------------------------------------
  // Each worker of a cluster holds a copy of the one shared store: the largest, not the sum.
  store_entries: gauge('Entries in the store, by kind (blacklist, watch keys, mailboxes, lists)', { kind: ['blacklist', 'watch', 'mailboxes', 'lists'] }, 'max'),
  store_write_failures_total: counter('Store writes that failed (logged)', {}),
  store_outages_total: counter('Times the shared store (Redis) became unreachable (logged at start and at recovery, with its duration and the changes held)', {}),
  store_backend_up: gauge('1 while the store backend is reachable, 0 during a shared store outage (the host serves from memory then); a cluster reports its least connected worker', {}, 'min'),
  store_changes_held: gauge('Changes held during a shared store outage, to be replayed when it returns', {}),
  store_changes_dropped_total: counter('Changes dropped past store.redis.queueLimit during an outage (kept in this host\'s memory, never in Redis)', {}),
  record_sessions_total: counter('Sessions written to the session record (config record)', {}),
  record_dropped_total: counter('Sessions the session record dropped instead of holding a reply: the queue was full, a write failed, or record.maxBytes was reached with today\'s file alone', { reason: ['queue-full', 'write-failed', 'max-bytes'] }),
  dns_cache_entries: gauge('DNS answers in the cache', {}, 'max'),
  dns_lookups_total: counter('DNS lookups sent (cache misses), by kind (dnsbl, rhsbl, mx)', { kind: open() }),
  dns_cache_hits_total: counter('DNS answers served from the cache, by kind (dnsbl, rhsbl, mx)', { kind: open() }),
  dns_listed_total: counter('DNS list answers that said listed, by zone', { zone: open() }),
  dns_refused_total: counter('DNS lists that refused our query (127.255.255.x), by zone', { zone: open() }),
  dns_errors_total: counter('DNS lookups that failed, by zone (mx for MX lookups) and error code', { zone: open(), code: open() }),
  // --- reloads ---------------------------------------------------------------------------
  reloads_total: counter('Reloads, by result', { result: ['ok', 'failed'] }),
  // In a cluster: the lowest worker's, so it moves once every worker has reloaded.
  ruleset_version: gauge('Version of the rule set new sessions get (1 at start, one more per good reload)', {}, 'min'),
} as const;

export type MetricName = keyof typeof METRICS;
type NamesOfType<T> = { [N in MetricName]: (typeof METRICS)[N]['type'] extends T ? N : never }[MetricName];
export type CounterName = NamesOfType<'counter'>;
export type GaugeName = NamesOfType<'gauge'>;
export type HistogramName = NamesOfType<'histogram'>;

type ValueOf<V> = V extends readonly (infer T)[] ? T : V extends Open<infer T> ? T : never;
/** The labels `name` takes, each with the values it may hold. */
export type LabelsOf<N extends MetricName> = { -readonly [K in keyof (typeof METRICS)[N]['labels']]: ValueOf<(typeof METRICS)[N]['labels'][K]> };
/** Labels are left out for a metric that has none. */
type LabelArg<N extends MetricName> = keyof LabelsOf<N> extends never ? [labels?: LabelsOf<N>] : [labels: LabelsOf<N>];

/**
 * One sample of `snapshot()` (`name{labels}`) over a cluster's workers: summed, or as the
 * metric's `cluster` rule says (the same rule /metrics follows through prom-client).
 */
export function combineSample(sample: string, values: number[]): number {
  const name = sample.replace(/\{.*$/, '').replace(/_count$/, '');
  const rule = (METRICS as Record<string, MetricDef<'counter' | 'gauge' | 'histogram', LabelSpec>>)[name]?.cluster;
  return rule === 'max' ? Math.max(...values) : rule === 'min' ? Math.min(...values) : values.reduce((a, b) => a + b, 0);
}

type AnyMetric = Counter<string> | Gauge<string> | FastHistogram;

export class Metrics {
  private readonly registry = new Registry();
  private readonly metrics = new Map<MetricName, AnyMetric>();
  /** Label names in catalogue order: samples show them in that order whatever order a call site uses. */
  private readonly labelNames = new Map<MetricName, string[]>();
  private readonly readers = new Map<GaugeName, (set: (labels: Record<string, string>, value: number) => void) => void | Promise<void>>();

  /** `counting` false: inc and observe do nothing (to measure what counting costs). */
  constructor(private readonly counting = true) {
    for (const [name, def] of Object.entries(METRICS) as [MetricName, MetricDef<'counter' | 'gauge' | 'histogram', LabelSpec>][]) {
      const labelNames = Object.keys(def.labels);
      const common = { name: METRIC_PREFIX + name, help: def.help, labelNames, registers: [this.registry] };
      const metric =
        def.type === 'counter' ? new Counter(common)
        : def.type === 'histogram' ? new FastHistogram(common.name, common.help, labelNames, def.buckets ?? [], this.registry)
        : new Gauge({ ...common, ...(def.cluster ? { aggregator: def.cluster } : {}), collect: () => this.read(name as GaugeName) });
      this.metrics.set(name, metric);
      this.labelNames.set(name, labelNames);
      if (def.type === 'counter') for (const labels of combinations(def.labels)) (metric as Counter<string>).inc(this.ordered(name, labels), 0);
    }
  }

  /** Adds `by` (default 1) to a counter. */
  inc<N extends CounterName>(name: N, ...args: [...LabelArg<N>, by?: number]): void {
    if (!this.counting) return;
    const [labels, by = 1] = args as unknown as [object | undefined, number?];
    (this.metrics.get(name) as Counter<string>).inc(this.ordered(name, labels), by);
  }

  /** Records one observation (a histogram: a rule call's seconds). */
  observe<N extends HistogramName>(name: N, labels: LabelsOf<N>, value: number): void {
    if (!this.counting) return;
    (this.metrics.get(name) as FastHistogram).observe(labels as Record<string, string>, value);
  }

  /**
   * Gives a gauge the function that reads it when /metrics is scraped: sizes and versions
   * kept elsewhere cost nothing between scrapes. `read` sets each labelled value it knows.
   */
  collect<N extends GaugeName>(name: N, read: (set: (labels: LabelsOf<N>, value: number) => void) => void | Promise<void>): void {
    this.readers.set(name, read as (set: (labels: Record<string, string>, value: number) => void) => void | Promise<void>);
  }

  /** The Prometheus text format of every metric, and the content type to serve it with. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /** Every metric as prom-client's JSON: what a cluster's primary sums over its workers (prom-client's AggregatorRegistry). */
  async samples(): Promise<unknown[]> {
    return this.registry.getMetricsAsJSON();
  }

  /** One sample's value (0 when it has none yet); a histogram's is its count of observations. */
  async get<N extends MetricName>(name: N, ...[labels]: LabelArg<N>): Promise<number> {
    const want = sampleKey(METRIC_PREFIX + name + (METRICS[name].type === 'histogram' ? '_count' : ''), this.ordered(name, labels));
    const { name: own, values } = await this.metrics.get(name)!.get();
    return values.find((v) => sampleKey((v as { metricName?: string }).metricName ?? own, v.labels) === want)?.value ?? 0;
  }

  /**
   * Every non-zero sample as `name{a="x"}` → value (a histogram: its _count, the calls),
   * for status.json and `portcullis stats`.
   */
  async snapshot(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const m of await this.registry.getMetricsAsJSON()) {
      const name = m.name.slice(METRIC_PREFIX.length);
      for (const v of m.values) {
        const sample = (v as { metricName?: string }).metricName?.slice(METRIC_PREFIX.length) ?? name;
        if (v.value === 0 || sample.endsWith('_bucket') || sample.endsWith('_sum')) continue;
        out[sampleKey(sample, v.labels)] = v.value;
      }
    }
    return out;
  }

  private ordered(name: MetricName, labels: object | undefined): Record<string, string> {
    const out: Record<string, string> = {};
    for (const k of this.labelNames.get(name)!) out[k] = (labels as Record<string, string>)[k]!;
    return out;
  }

  private async read(name: GaugeName): Promise<void> {
    const read = this.readers.get(name);
    if (!read) return;
    const g = this.metrics.get(name) as Gauge<string>;
    g.reset(); // a label set the reader no longer reports goes away
    await read((labels, value) => g.set(this.ordered(name, labels), value));
  }
}

/** Every combination of a metric's listed label values; none when a label is open. */
function combinations(spec: LabelSpec): Record<string, string>[] {
  let out: Record<string, string>[] = [{}];
  for (const [k, values] of Object.entries(spec)) {
    if (!Array.isArray(values)) return [];
    out = out.flatMap((o) => (values as readonly string[]).map((v) => ({ ...o, [k]: v })));
  }
  return out;
}

/** `name{a="x",b="y"}`, as Prometheus writes a sample (labels in the order given). */
function sampleKey(name: string, labels: Record<string, unknown>): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${String(v)}"`);
  return parts.length ? `${name}{${parts.join(',')}}` : name;
}
