// Owns: picking free loopback TCP ports for servers started by tests.
import net from "node:net";

/** Returns a TCP port that was free on 127.0.0.1 a moment ago (listens on port 0, reads it, closes). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
