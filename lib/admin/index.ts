/**
 * `session-replication/admin`: the operator surface of a cluster node as a Hono router (probes,
 * cluster views, drain, dashboard, Prometheus metrics) behind a required guard. Web-standard.
 */
export { adminRoutes, probeRoutes, type AdminRoutesOptions } from './routes.ts';
export { adminGuard, type AdminGuardOptions } from './guard.ts';
export { MetricsWriter, PROMETHEUS_CONTENT_TYPE, renderMetrics, type MetricSample } from './metrics.ts';
