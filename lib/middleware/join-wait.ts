// Owns: the bounded wait of a request that names a session while its node is still joining the cluster.

/** How long a request that names a session waits for a joining node's state transfer before it gets 503. */
export const JOIN_WAIT_MS = 5000;

/** True when `ready` settles within `ms`. */
export function joinedWithin(ready: Promise<void>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  return Promise.race([ready.then(() => true), timeout]).finally(() => clearTimeout(timer));
}
