/** What every edge runtime entry (`session-replication/deno`, `session-replication/bun`) re-exports beside its `serve…` function. */
export {
  createEdgeMember,
  type EdgeMember,
  type EdgeMemberOptions,
  type FetchHandler,
  type MemberApp,
} from './member.ts';
export type { HostOptions, ServedMember } from './host.ts';
