/** Free TCP ports for the servers the launcher starts. */
import { createServer, type AddressInfo, type Server } from 'node:net';

/**
 * Ports this process handed out already. The kernel's bind to port 0 gives a just-closed port again
 * often (a NATS cluster once got one port for a server's clients and its route), so each is handed out
 * once per process.
 */
const handedOut = new Set<number>();

/** Listens on port 0 of `host` and returns the server with the port the kernel chose. */
async function listenOnAnyPort(host: string): Promise<{ server: Server; port: number }> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  return { server, port: (server.address() as AddressInfo).port };
}

/**
 * A TCP port that was free on `host` a moment ago and that this process has not handed out before
 * (listens on port 0, reads it, closes). A repeat is held open while the kernel is asked again.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const held: Server[] = [];
  try {
    for (;;) {
      const { server, port } = await listenOnAnyPort(host);
      held.push(server);
      if (!handedOut.has(port)) {
        handedOut.add(port);
        return port;
      }
    }
  } finally {
    await Promise.all(held.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  }
}

/** Whether `port` can be bound on `host` now. */
export async function portIsFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  const server = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    return true;
  } catch {
    return false;
  } finally {
    await new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
  }
}
