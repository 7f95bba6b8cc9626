/**
 * Draining a node before it stops: it announces `draining` in its heartbeats, refuses new sessions
 * (503 + Retry-After from the middleware, `/healthz` 503 so a load balancer stops sending traffic),
 * hands its sessions to other members (`SessionManager.drain`), and reports `drained` once nothing
 * is left here and no request came in for a quiet period: then it is safe to stop.
 */
import type { Logger } from './logger.ts';
import type { Membership } from './membership/membership.ts';

/** What `GET /cluster/drain` answers. */
export interface DrainStatus {
  /** `serving` (not draining), `draining`, or `drained` (safe to stop). */
  state: 'serving' | 'draining' | 'drained';
  /** What still holds the node: sessions (backup manager) or unacknowledged writes (delta manager) plus requests in flight. */
  remaining: number;
  /** Session requests being handled now. */
  inFlight: number;
  /** When draining started (ms since epoch). */
  startedAt?: number;
  /** How long draining took, once drained. */
  durationMs?: number;
}

/** The part of a manager draining needs. */
export interface Drainable {
  /** Hands this node's sessions to others (or waits for outstanding acks); resolves when none is left here. */
  drain(): Promise<void>;
  /** Sessions or writes that still keep this node from stopping safely. */
  drainRemaining(): number;
}

/** Tracks draining and the session requests in flight on one node. */
export class DrainController {
  #inFlight = 0;
  #lastRequestAt = 0;
  #startedAt: number | undefined;
  #drainedAt: number | undefined;
  #handedOver = false;
  #running: Promise<void> | undefined;

  constructor(
    private readonly manager: Drainable,
    private readonly membership: Membership,
    private readonly logger: Logger,
    /** How long no session request may arrive before `drained` is reported (the load balancer has stopped routing here). */
    private readonly quietMs: number,
  ) {}

  /** Whether this node is draining (or drained). */
  get draining(): boolean {
    return this.#startedAt !== undefined;
  }

  /** Counts a session request in flight until the returned function is called. */
  enter(): () => void {
    this.#inFlight++;
    this.#lastRequestAt = Date.now();
    let left = false;
    return () => {
      if (left) return;
      left = true;
      this.#inFlight--;
      this.#lastRequestAt = Date.now();
    };
  }

  /** Starts draining (idempotent); resolves once the manager handed everything over. */
  start(): Promise<void> {
    if (this.#running) return this.#running;
    this.#startedAt = Date.now();
    this.membership.setDraining(true);
    this.logger.info({ remaining: this.manager.drainRemaining() }, 'draining: handing sessions over');
    this.#running = this.manager.drain().then(() => {
      this.#handedOver = true;
      this.logger.info({ durationMs: Date.now() - this.#startedAt! }, 'draining: sessions handed over');
    });
    return this.#running;
  }

  /** The drain state now. */
  status(now = Date.now()): DrainStatus {
    const remaining = (this.draining ? this.manager.drainRemaining() : 0) + this.#inFlight;
    if (this.#startedAt === undefined) return { state: 'serving', remaining, inFlight: this.#inFlight };
    const quiet = now - Math.max(this.#lastRequestAt, this.#startedAt) >= this.quietMs;
    const drained = this.#handedOver && remaining === 0 && quiet;
    if (drained && this.#drainedAt === undefined) {
      this.#drainedAt = now;
      this.logger.info({ durationMs: now - this.#startedAt }, 'drained: safe to stop');
    }
    if (!drained) this.#drainedAt = undefined;
    return {
      state: drained ? 'drained' : 'draining',
      remaining,
      inFlight: this.#inFlight,
      startedAt: this.#startedAt,
      ...(drained ? { durationMs: this.#drainedAt! - this.#startedAt } : {}),
    };
  }
}
