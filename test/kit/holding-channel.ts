// Owns: a channel wrapper that holds back what one node receives on chosen subjects (a node that missed or has not yet
// got messages), while everything else (heartbeats, requests and their replies) flows: the read-your-writes tests' stale node.
import type { Channel, ChannelMessage, ChannelSubscription } from '../../lib/channel/channel.ts';
import { subjectMatches } from '../../lib/channel/subjects.ts';

/** A channel whose deliveries on some subjects can be held back. */
export interface HoldingChannel extends Channel {
  /** How many deliveries wait now. */
  readonly held: number;
  /** Holds matching deliveries from now on. */
  hold(): void;
  /** Delivers what was held, in order, and stops holding. */
  release(): void;
}

/** Wraps `inner`; after `hold()`, messages arriving on subjects matching `patterns` wait until `release()`. */
export function holdingChannel(inner: Channel, patterns: readonly string[]): HoldingChannel {
  const waiting: Array<() => void> = [];
  const matchers = patterns.map((pattern) => pattern.split('.'));
  let holding = false;
  const holds = (subject: string) => {
    const tokens = subject.split('.');
    return holding && matchers.some((matcher) => subjectMatches(matcher, tokens));
  };
  const subscribe = (
    subject: string,
    handler: (message: ChannelMessage) => void,
    options?: { queue?: string },
  ): ChannelSubscription =>
    inner.subscribe(
      subject,
      (message) => (holds(message.subject) ? waiting.push(() => handler(message)) : handler(message)),
      options,
    );
  return {
    kind: inner.kind,
    ...(inner.maxPayload !== undefined ? { maxPayload: inner.maxPayload } : {}),
    get held() {
      return waiting.length;
    },
    hold: () => void (holding = true),
    release: () => {
      holding = false;
      for (const deliver of waiting.splice(0)) deliver();
    },
    subscribe,
    publish: (subject, data, options) => inner.publish(subject, data, options),
    request: (subject, data, options) => inner.request(subject, data, options),
    flush: () => inner.flush(),
    onStatus: (listener) => inner.onStatus(listener),
    close: () => {
      waiting.length = 0;
      return inner.close();
    },
  };
}
