// Owns: NATS fixtures beyond one plain server: TLS material made with openssl at test time, NKey pairs,
// and clusters of nats-server processes joined by routes (all on 127.0.0.1, random ports).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { nkeys } from '@nats-io/nats-core';
import {
  freePort,
  removeDirOnExit,
  startNatsServer,
  waitFor,
  type NatsServerHandle,
  type NatsServerOptions,
} from '../../functions/launch/index.ts';

/** A certificate and its private key (PEM files). */
export interface CertFiles {
  cert: string;
  key: string;
}

/** TLS files for tests: a CA, a server certificate for 127.0.0.1 and client certificates it signed. */
export interface TlsFiles {
  /** Temp dir holding every file (removed by remove()). */
  dir: string;
  /** The CA certificate (PEM): what clients trust and what a `verify: true` server checks client certificates against. */
  ca: string;
  /** Server certificate with subjectAltName IP:127.0.0.1 (and CN 127.0.0.1). */
  server: CertFiles;
  /** Client certificates by name (CN = name, extendedKeyUsage clientAuth). */
  clients: Record<string, CertFiles>;
  /** A certificate for 127.0.0.1 signed by a different CA (not trusted by `ca`). */
  rogue: CertFiles;
  /** The nats-server `tls { ... }` block for this server certificate; `verify` asks for client certificates. */
  serverBlock(opts?: { verify?: boolean }): string;
  /** Removes the temp dir. */
  remove(): void;
}

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    throw new Error(`openssl ${args.join(' ')} failed: ${err.stderr?.toString() ?? err.message}`);
  }
}

/** Makes a P-256 key and a certificate for `cn` signed by `caName` (files NAME.pem and NAME-key.pem in dir). */
function issue(dir: string, name: string, cn: string, caName: string, extensions: string): CertFiles {
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}-key.pem`], dir);
  openssl(['req', '-new', '-key', `${name}-key.pem`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`], dir);
  writeFileSync(join(dir, `${name}.ext`), extensions);
  openssl(
    [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${caName}.pem`,
      '-CAkey',
      `${caName}-key.pem`,
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
    ],
    dir,
  );
  return { cert: join(dir, `${name}.pem`), key: join(dir, `${name}-key.pem`) };
}

function makeCa(dir: string, name: string): void {
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}-key.pem`], dir);
  openssl(
    ['req', '-x509', '-new', '-key', `${name}-key.pem`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=${name}`],
    dir,
  );
}

/**
 * Generates TLS material with the `openssl` command: a CA, a server certificate for 127.0.0.1
 * (subjectAltName IP:127.0.0.1), one client certificate per name, and a server certificate from an
 * untrusted CA. Everything lives in a temp dir removed at exit (or by remove()).
 */
export function createTlsFiles(clientNames: string[] = ['client']): TlsFiles {
  const dir = mkdtempSync(join(tmpdir(), 'tls-test-'));
  const keepDir = removeDirOnExit(dir);
  try {
    makeCa(dir, 'ca');
    const server = issue(
      dir,
      'server',
      '127.0.0.1',
      'ca',
      'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n',
    );
    const clients: Record<string, CertFiles> = {};
    for (const name of clientNames)
      clients[name] = issue(dir, `client-${name}`, name, 'ca', 'extendedKeyUsage=clientAuth\n');
    makeCa(dir, 'other-ca');
    const rogue = issue(
      dir,
      'rogue',
      '127.0.0.1',
      'other-ca',
      'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n',
    );
    const ca = join(dir, 'ca.pem');
    return {
      dir,
      ca,
      server,
      clients,
      rogue,
      serverBlock: ({ verify = false } = {}) =>
        `tls { cert_file: ${JSON.stringify(server.cert)}, key_file: ${JSON.stringify(server.key)}, ca_file: ${JSON.stringify(ca)}, verify: ${verify}, timeout: 5 }`,
      remove: () => {
        rmSync(dir, { recursive: true, force: true });
        keepDir();
      },
    };
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    keepDir();
    throw e;
  }
}

/** A user NKey pair: the seed (SU...) a client signs with and the public key (U...) the server lists. */
export function createUserNKey(): { seed: string; publicKey: string } {
  const pair = nkeys.createUser();
  return { seed: new TextDecoder().decode(pair.getSeed()), publicKey: pair.getPublicKey() };
}

/** Options for {@link startNatsCluster}. */
export interface NatsClusterOptions {
  /** Number of servers (default 3). */
  size?: number;
  /** Appended to every server's config (e.g. authorization, max_pending). */
  extraConfig?: string;
  /** JetStream on every server. */
  jetstream?: boolean;
  /** How long to wait for the routes to carry messages between every pair (default 30000 ms). */
  timeoutMs?: number;
}

/** nats-server processes joined by cluster routes. */
export interface NatsClusterHandle {
  servers: NatsServerHandle[];
  /** Client URLs, one per server, in order. */
  urls: string[];
  /** Starts server `index` again on its ports (after kill/stop); replaces servers[index]. */
  restart(index: number): Promise<NatsServerHandle>;
  /** Stops every server. */
  stop(): Promise<void>;
}

/**
 * Starts `size` nats-servers on 127.0.0.1 joined by routes (names n1..nN, cluster "test"), then waits
 * until a message published on each server reaches a subscriber on every other one.
 */
export async function startNatsCluster(opts: NatsClusterOptions = {}): Promise<NatsClusterHandle> {
  // Ports are chosen before the servers bind them, so another process may take one meanwhile:
  // a bind failure picks new ports and starts again (three tries).
  for (let attempt = 1; ; attempt++) {
    try {
      return await startNatsClusterOnce(opts);
    } catch (e) {
      if (attempt >= 3 || !/address already in use/.test((e as Error).message)) throw e;
    }
  }
}

async function startNatsClusterOnce(opts: NatsClusterOptions): Promise<NatsClusterHandle> {
  const size = opts.size ?? 3;
  const clientPorts: number[] = [];
  const routePorts: number[] = [];
  for (let i = 0; i < size; i++) {
    clientPorts.push(await freePort());
    routePorts.push(await freePort());
  }
  const options = (i: number): NatsServerOptions => ({
    port: clientPorts[i]!,
    serverName: `n${i + 1}`,
    cluster: { name: 'test', port: routePorts[i]!, routes: routePorts },
    ...(opts.jetstream ? { jetstream: true } : {}),
    ...(opts.extraConfig ? { extraConfig: opts.extraConfig } : {}),
  });
  const servers: NatsServerHandle[] = [];
  try {
    for (let i = 0; i < size; i++) servers.push(await startNatsServer(options(i)));
    await waitForRoutes(
      servers.map((s) => s.url),
      opts.timeoutMs ?? 30_000,
    );
  } catch (e) {
    await Promise.allSettled(servers.map((s) => s.stop()));
    throw e;
  }
  return {
    servers,
    urls: servers.map((s) => s.url),
    async restart(index) {
      await servers[index]!.stop();
      servers[index] = await startNatsServer(options(index));
      return servers[index]!;
    },
    stop: async () => void (await Promise.allSettled(servers.map((s) => s.stop()))),
  };
}

/** Waits until a message published on each URL reaches a subscriber on every other URL (routes are up). */
async function waitForRoutes(urls: string[], timeoutMs: number): Promise<void> {
  const conns = await Promise.all(urls.map((url) => connect({ servers: url, name: 'kit-route-check' })));
  try {
    await waitFor(
      'NATS cluster routes between every pair of servers',
      async () => {
        for (const [i, from] of conns.entries()) {
          for (const [j, to] of conns.entries()) {
            if (i === j) continue;
            const subject = `kit.routes.${i}.${j}.${Math.random().toString(36).slice(2)}`;
            const sub = to.subscribe(subject, { max: 1 });
            await to.flush();
            // Subscription interest travels over the route asynchronously: publish a few times.
            const got = (async () => {
              for await (const _ of sub) return true;
              return false;
            })();
            const timer = setInterval(() => from.publish(subject), 50);
            from.publish(subject);
            const ok = await Promise.race([got, new Promise<boolean>((r) => setTimeout(() => r(false), 1000))]);
            clearInterval(timer);
            sub.unsubscribe();
            if (!ok) return false;
          }
        }
        return true;
      },
      { timeoutMs, intervalMs: 100 },
    );
  } finally {
    await Promise.allSettled(conns.map((c) => c.close()));
  }
}
