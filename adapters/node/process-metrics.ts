/** Process metrics for `/metrics` on Node: CPU, memory, start time and event-loop delay, in Prometheus text. */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { MetricsWriter } from '../../lib/admin/index.ts';

let loopDelay: IntervalHistogram | undefined;

/**
 * Returns a renderer of this process's metrics (`process_*`, `nodejs_*`), every sample labelled
 * with `labels` (the node's `cluster` and `node`), for `adminRoutes`' `extraMetrics`.
 */
export function processMetrics(labels: Readonly<Record<string, string>>): () => string {
  if (!loopDelay) {
    loopDelay = monitorEventLoopDelay({ resolution: 20 });
    loopDelay.enable();
  }
  const delay = loopDelay;
  const startSeconds = Math.round((Date.now() - process.uptime() * 1000) / 1000);
  return () => {
    const out = new MetricsWriter(labels);
    const cpu = process.cpuUsage();
    const memory = process.memoryUsage();
    out.family('process_cpu_user_seconds_total', 'counter', 'User CPU time spent, in seconds.', [
      { value: cpu.user / 1e6 },
    ]);
    out.family('process_cpu_system_seconds_total', 'counter', 'System CPU time spent, in seconds.', [
      { value: cpu.system / 1e6 },
    ]);
    out.family('process_cpu_seconds_total', 'counter', 'User and system CPU time spent, in seconds.', [
      { value: (cpu.user + cpu.system) / 1e6 },
    ]);
    out.family('process_resident_memory_bytes', 'gauge', 'Resident memory size, in bytes.', [{ value: memory.rss }]);
    out.family('process_start_time_seconds', 'gauge', 'Start time of the process since the Unix epoch, in seconds.', [
      { value: startSeconds },
    ]);
    out.family('nodejs_heap_size_used_bytes', 'gauge', 'V8 heap in use, in bytes.', [{ value: memory.heapUsed }]);
    out.family('nodejs_heap_size_total_bytes', 'gauge', 'V8 heap size, in bytes.', [{ value: memory.heapTotal }]);
    const mean = Number.isNaN(delay.mean) ? 0 : delay.mean;
    out.family('nodejs_eventloop_lag_seconds', 'gauge', 'Mean event-loop delay since the last scrape, in seconds.', [
      { value: mean / 1e9 },
    ]);
    out.family('nodejs_eventloop_lag_p99_seconds', 'gauge', 'p99 event-loop delay since the last scrape, in seconds.', [
      { value: delay.percentile(99) / 1e9 },
    ]);
    delay.reset();
    return out.text();
  };
}
