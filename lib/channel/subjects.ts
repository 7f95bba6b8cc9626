/**
 * Subject rules every channel shares: NATS subject syntax (`.`-separated tokens, `*` for one token,
 * `>` for the rest), which subjects may be published to, and which node a subject is addressed to.
 */
import { InvalidOptionsError } from '../errors.ts';

/** Whether a subject matches a subscription pattern with NATS wildcards (`*` one token, `>` the rest). */
export function subjectMatches(pattern: readonly string[], subject: readonly string[]): boolean {
  for (let i = 0; i < pattern.length; i++) {
    const token = pattern[i];
    if (token === '>') return subject.length > i;
    if (i >= subject.length || (token !== '*' && token !== subject[i])) return false;
  }
  return pattern.length === subject.length;
}

/** Whether a subject holds a wildcard token (`*` or `>`): a pattern to subscribe to, not a subject to publish on. */
export function hasWildcard(subject: string): boolean {
  return subject.split('.').some((token) => token === '*' || token === '>');
}

/** An empty token, a lone wildcard token, or whitespace: what a subject to publish on must not hold. */
const NOT_PUBLISHABLE = /(?:^|\.)[*>]?(?:\.|$)|\s/;

/**
 * Throws `InvalidOptionsError` unless `subject` can be published to: non-empty tokens without
 * whitespace, and no wildcard (NATS would not deliver it; a memory or SNS channel would).
 */
export function assertPublishSubject(subject: string): void {
  if (!NOT_PUBLISHABLE.test(subject)) return;
  if (hasWildcard(subject))
    throw new InvalidOptionsError(`cannot publish to "${subject}": wildcards (* and >) are for subscriptions only`);
  throw new InvalidOptionsError(`invalid subject "${subject}": tokens must be non-empty, without whitespace`);
}

/**
 * The default point-to-point rule of a cluster: which node a subject is addressed to, or undefined
 * for a broadcast. Reply inboxes `_INBOX.<n>.…` and the cluster bus's node subjects
 * `<subjectPrefix>.<cluster>.node.<n>` go to node `n`.
 */
export function clusterPointToPoint(subjectPrefix = 'sessrep'): (subject: string) => string | undefined {
  const prefix = subjectPrefix.split('.');
  return (subject) => {
    const tokens = subject.split('.');
    if (tokens[0] === '_INBOX') return tokens.length >= 3 ? tokens[1] : undefined;
    if (tokens.length !== prefix.length + 3 || tokens[prefix.length + 1] !== 'node') return undefined;
    for (let i = 0; i < prefix.length; i++) if (tokens[i] !== prefix[i]) return undefined;
    return tokens[prefix.length + 2];
  };
}
