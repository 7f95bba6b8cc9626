/** The composition root: options and their defaults, the wiring, the operator views and `createCluster`. */
export {
  clusterNode,
  createCluster,
  type ClusterNode,
  type MembershipView,
  type PrincipalSession,
} from './create-cluster.ts';
export { resolveOptions, type ClusterOptions, type ResolvedOptions } from './options.ts';
export type { ChannelState, ChannelWatch, ClusterStatus, MemberStatus, SessionList } from './status.ts';
export { wireNode, type NodeParts } from './wire.ts';
