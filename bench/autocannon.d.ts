/** Minimal typings for the parts of autocannon@9's programmatic API the benchmark uses (it ships none). */
declare module 'autocannon' {
  /** An hdr-histogram percentile summary. */
  export interface Histogram {
    average: number;
    mean: number;
    stddev: number;
    min: number;
    max: number;
    total: number;
    p50: number;
    p90: number;
    p97_5: number;
    p99: number;
  }

  /** One request of a client's sequence. */
  export interface Request {
    method?: string;
    path?: string;
    headers?: Record<string, string>;
    body?: string | Buffer;
  }

  /** The per-connection client passed to `setupClient`. */
  export interface Client {
    setHeaders(headers: Record<string, string> | undefined): void;
    setRequests(requests: Request[]): void;
  }

  /** Options of a run. */
  export interface Options {
    url: string;
    connections?: number;
    duration?: number;
    amount?: number;
    method?: string;
    headers?: Record<string, string>;
    body?: string;
    timeout?: number;
    pipelining?: number;
    setupClient?: (client: Client) => void;
  }

  /** Results of a run. */
  export interface Result {
    requests: Histogram;
    latency: Histogram;
    throughput: Histogram;
    duration: number;
    errors: number;
    timeouts: number;
    non2xx: number;
    '2xx': number;
    statusCodeStats: Record<string, { count: number }>;
  }

  /** An autocannon run: an event emitter that is also a promise of its results. */
  export interface Instance extends PromiseLike<Result> {
    stop(): void;
  }

  function autocannon(options: Options): Instance;
  export default autocannon;
}
