/**
 * `session-replication/admin`: the operator surface of a cluster node as a Hono router (probes,
 * cluster views, drain, dashboard, Prometheus metrics) behind a required guard. Web-standard.
 */
export { adminRoutes, type AdminRoutesOptions } from './routes.ts';
export { adminGuard, type AdminGuardOptions } from './guard.ts';
export { PROMETHEUS_CONTENT_TYPE, renderMetrics } from './metrics.ts';
