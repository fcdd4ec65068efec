/**
 * A small Prometheus text-format (0.0.4) writer: counters, gauges and
 * histograms with labels, rendered on scrape. Just enough for /metrics.
 *
 * @example
 * const registry = new Registry();
 * const ttft = registry.histogram('offramp:time_to_first_token_seconds', 'Time to first token.', [0.01, 0.1, 1]);
 * ttft.observe(0.042, { model_name: 'stories260K' });
 * registry.render(); // "# HELP offramp:time_to_first_token_seconds …"
 *
 * @module
 */

export type Labels = Readonly<Record<string, string>>;

/** The content type Prometheus expects for this format. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function formatLabels(labels: Labels): string {
  const entries = Object.entries(labels);
  if (entries.length === 0) return '';
  return `{${entries.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(',')}}`;
}

/**
 * Series keys by label object: the request path passes the same few label
 * objects for every token, and formatting them each time showed in profiles.
 * Label objects are read-only, so a cached key cannot go stale.
 */
const seriesKeys = new WeakMap<Labels, string>();

function seriesKey(labels: Labels): string {
  let key = seriesKeys.get(labels);
  if (key === undefined) {
    key = formatLabels(labels);
    seriesKeys.set(labels, key);
  }
  return key;
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

/** One metric family: a name, help text, a type, and its series by label set. */
abstract class Metric<S> {
  protected readonly series = new Map<string, { labels: Labels; state: S }>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge' | 'histogram',
  ) {}

  protected abstract initial(): S;
  protected abstract lines(labels: Labels, state: S): string[];

  protected stateOf(labels: Labels): S {
    const key = seriesKey(labels);
    let entry = this.series.get(key);
    if (!entry) {
      entry = { labels, state: this.initial() };
      this.series.set(key, entry);
    }
    return entry.state;
  }

  render(): string {
    const out = [`# HELP ${this.name} ${this.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${this.name} ${this.type}`];
    for (const { labels, state } of this.series.values()) out.push(...this.lines(labels, state));
    return out.join('\n');
  }
}

/** A metric with one number per series (counters and gauges). */
abstract class SingleValueMetric extends Metric<{ value: number }> {
  get(labels: Labels = {}): number {
    return this.stateOf(labels).value;
  }

  protected initial() {
    return { value: 0 };
  }

  protected lines(labels: Labels, state: { value: number }): string[] {
    return [`${this.name}${formatLabels(labels)} ${formatValue(state.value)}`];
  }
}

export class Counter extends SingleValueMetric {
  constructor(name: string, help: string) {
    super(name, help, 'counter');
  }

  inc(labels: Labels = {}, amount = 1): void {
    if (amount < 0) throw new RangeError(`${this.name}: a counter only goes up`);
    this.stateOf(labels).value += amount;
  }

  /** Makes the series exist (at 0) before anything happens, so a scrape shows it. */
  touch(labels: Labels = {}): void {
    this.stateOf(labels);
  }
}

export class Gauge extends SingleValueMetric {
  constructor(name: string, help: string) {
    super(name, help, 'gauge');
  }

  set(value: number, labels: Labels = {}): void {
    this.stateOf(labels).value = value;
  }

  /** Drops every series: for labelled gauges whose label set changes (ramps come and go). */
  clear(): void {
    this.series.clear();
  }
}

interface HistogramState {
  /** Per bucket (not cumulative); rendered cumulative. */
  counts: number[];
  sum: number;
  count: number;
}

export class Histogram extends Metric<HistogramState> {
  /** Upper bounds, ascending; +Inf is implied. */
  readonly buckets: readonly number[];

  constructor(name: string, help: string, buckets: readonly number[]) {
    super(name, help, 'histogram');
    this.buckets = [...buckets].sort((a, b) => a - b);
  }

  observe(value: number, labels: Labels = {}): void {
    const state = this.stateOf(labels);
    const index = this.buckets.findIndex((bound) => value <= bound);
    if (index >= 0) state.counts[index]! += 1;
    state.sum += value;
    state.count += 1;
  }

  touch(labels: Labels = {}): void {
    this.stateOf(labels);
  }

  protected initial(): HistogramState {
    return { counts: this.buckets.map(() => 0), sum: 0, count: 0 };
  }

  protected lines(labels: Labels, state: HistogramState): string[] {
    const out: string[] = [];
    let cumulative = 0;
    this.buckets.forEach((bound, i) => {
      cumulative += state.counts[i]!;
      out.push(`${this.name}_bucket${formatLabels({ ...labels, le: formatValue(bound) })} ${cumulative}`);
    });
    out.push(`${this.name}_bucket${formatLabels({ ...labels, le: '+Inf' })} ${state.count}`);
    out.push(`${this.name}_sum${formatLabels(labels)} ${formatValue(state.sum)}`);
    out.push(`${this.name}_count${formatLabels(labels)} ${state.count}`);
    return out;
  }
}

/** A set of metric families rendered together. */
export class Registry {
  private readonly metrics: { readonly name: string; render(): string }[] = [];

  counter(name: string, help: string): Counter {
    return this.add(new Counter(name, help));
  }

  gauge(name: string, help: string): Gauge {
    return this.add(new Gauge(name, help));
  }

  histogram(name: string, help: string, buckets: readonly number[]): Histogram {
    return this.add(new Histogram(name, help, buckets));
  }

  /** The whole exposition, ending with a newline. */
  render(): string {
    return `${this.metrics.map((m) => m.render()).join('\n')}\n`;
  }

  private add<M extends { readonly name: string; render(): string }>(metric: M): M {
    if (this.metrics.some((m) => m.name === metric.name)) throw new Error(`metric ${metric.name} registered twice`);
    this.metrics.push(metric);
    return metric;
  }
}
