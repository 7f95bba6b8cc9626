/**
 * The sessions of each user on this node: the principal attribute (`session.setPrincipal(id)`)
 * indexed as the session table merges, so `findByPrincipal` needs no scan.
 */
import { decodeValue } from './values.ts';
import type { SessionObserver } from './events.ts';
import type { SessionState } from './state.ts';

/** Session keys by principal, kept up to date by the session table. */
export class PrincipalIndex {
  readonly #keys = new Map<string, Set<string>>();
  readonly #principalOf = new Map<string, string>();

  constructor(readonly attribute: string) {}

  /** The keys of the live sessions this node holds for `principal`. */
  keysOf(principal: string): string[] {
    return [...(this.#keys.get(principal) ?? [])];
  }

  /** Number of principals with at least one session here. */
  get size(): number {
    return this.#keys.size;
  }

  /** The observer that keeps the index. */
  observer(): SessionObserver {
    const read = (state: SessionState) => {
      const value = state.attributes.get(this.attribute)?.value;
      if (value === undefined) return this.#drop(state.key);
      const principal = decodeValue(value);
      if (typeof principal === 'string') this.#put(state.key, principal);
      else this.#drop(state.key);
    };
    return {
      created: (state) => read(state),
      attribute: (state, name) => {
        if (name === this.attribute) read(state);
      },
      ended: (state) => this.#drop(state.key),
      removed: (key) => this.#drop(key),
    };
  }

  #put(key: string, principal: string): void {
    if (this.#principalOf.get(key) === principal) return;
    this.#drop(key);
    this.#principalOf.set(key, principal);
    let keys = this.#keys.get(principal);
    if (!keys) this.#keys.set(principal, (keys = new Set()));
    keys.add(key);
  }

  #drop(key: string): void {
    const principal = this.#principalOf.get(key);
    if (principal === undefined) return;
    this.#principalOf.delete(key);
    const keys = this.#keys.get(principal);
    keys?.delete(key);
    if (keys?.size === 0) this.#keys.delete(principal);
  }
}
