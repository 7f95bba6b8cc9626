/**
 * Tomcat's side of the memory section: heap bytes per session in Tomcat 10.1 with the DeltaManager,
 * for the same sessions as ours (4 attributes of `attributeBytes / 4` characters, a random prefix
 * then `x`s), measured the same way (heap after a full collection minus the heap before, divided by
 * the sessions).
 *
 * Two Tomcat instances in a throwaway CATALINA_BASE each (rendered in a temporary directory, a
 * servlet compiled with `javac` against the installed servlet API), one cluster with static
 * membership on loopback. Steps: `served` starts alone and creates 500 warm-up sessions; `joined`
 * starts, receives them in the DeltaManager state transfer, and its heap is read (the baseline);
 * `joined` stops; `served`'s heap is read, `sessions` more are created through HTTP, and its heap is
 * read again; `joined` starts again and receives all of them in the state transfer, and its heap is
 * read ("its heap after the join step"). Heap readings are `jcmd <pid> GC.run` (twice) then
 * `GC.heap_info` (used), and `GC.class_histogram` (live bytes, a cross-check and the per-class
 * breakdown). Both JVMs run with the same fixed heap; their flags are read back with `jcmd VM.flags`.
 *
 * Needs Debian's `tomcat10` (CATALINA_HOME, default /usr/share/tomcat10) and a JDK (`java`, `javac`,
 * `jcmd`); without them the result says what is missing and nothing runs. Nothing is downloaded.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  defaultGroup,
  findExecutable,
  freePort,
  spawnTracked,
  type TrackedProcess,
  tail,
  waitFor,
} from '../functions/launch/index.ts';

const run = promisify(execFile);

/** Settings of the Tomcat measurement. */
export interface TomcatMemoryOptions {
  sessions: number;
  /** Attribute bytes per session (split over 4 attributes). */
  attributeBytes: number;
  log: (line: string) => void;
  /** The JVM heap options of both instances. @default ['-Xms2g', '-Xmx2g'] */
  heap?: string[];
}

/** One Tomcat instance's figure. */
export interface TomcatMemoryRow {
  /** `served`: the node the sessions were created on; `joined`: the node that received them in the state transfer. */
  node: 'served' | 'joined';
  sessions: number;
  attributeBytes: number;
  /** Growth of `GC.heap_info` used after a full collection, per session. */
  heapBytesPerSession: number;
  /** Growth of the live bytes of `GC.class_histogram`, per session (cross-check). */
  liveBytesPerSession: number;
  /** The DeltaManager's activeSessions at the end (warm-up sessions included). */
  held: number;
  /** The classes that grew most: bytes and instances per session. */
  topClasses: { name: string; bytesPerSession: number; instancesPerSession: number }[];
}

/** The Tomcat measurement, or why it was skipped. */
export interface TomcatMemoryResult {
  /** Set when the measurement did not run (Tomcat or a JDK missing). */
  skipped?: string;
  /** `Apache Tomcat/10.1.x` as the server reports it. */
  version?: string;
  /** The JVM's version line. */
  java?: string;
  /** The flags of the joined node's JVM (`jcmd VM.flags`). */
  jvmFlags?: string;
  rows: TomcatMemoryRow[];
  /** Seconds to create the sessions on the served node. */
  createSec?: number;
  /** Seconds from starting the joined node to its answering with every session received. */
  joinSec?: number;
}

const WARMUP = 500;
const CATALINA_HOME = process.env.CATALINA_HOME ?? '/usr/share/tomcat10';

/** What is missing to run Tomcat here, or undefined when everything is. */
function missing(): string | undefined {
  const needed = ['bin/catalina.sh', 'lib/servlet-api.jar', 'lib/catalina-ha.jar', 'lib/catalina-tribes.jar'];
  const absent = needed.filter((file) => !existsSync(join(CATALINA_HOME, file)));
  if (absent.length > 0)
    return `Tomcat not found in ${CATALINA_HOME} (missing ${absent.join(', ')}; apt-get install tomcat10, or set CATALINA_HOME)`;
  const tools = ['java', 'javac', 'jcmd'].filter((tool) => !findExecutable(tool));
  if (tools.length > 0) return `${tools.join(', ')} not found on PATH (apt-get install openjdk-17-jdk-headless)`;
  return undefined;
}

const SERVLET = `import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import jakarta.servlet.http.HttpSession;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import javax.management.MBeanServer;
import javax.management.ObjectName;

/** POST: a new session with 4 attributes of "part" characters. GET: the manager's and the channel's counts as JSON. */
public class MemoryBench extends HttpServlet {
  private static final String[] NAMES = { "attr0", "attr1", "attr2", "attr3" };
  private int part;

  @Override public void init() { part = Integer.parseInt(getInitParameter("part")); }

  @Override protected void doPost(HttpServletRequest req, HttpServletResponse res) throws IOException {
    HttpSession session = req.getSession(true);
    String n = Long.toString((long) (Math.random() * 1e9), 36);
    for (String name : NAMES) session.setAttribute(name, n + "x".repeat(part - n.length()));
    res.setContentType("text/plain");
    res.getWriter().write("ok");
  }

  @Override protected void doGet(HttpServletRequest req, HttpServletResponse res) throws IOException {
    MBeanServer mbs = ManagementFactory.getPlatformMBeanServer();
    try {
      Object sessions = mbs.getAttribute(new ObjectName("Catalina:type=Manager,host=localhost,context=/app"), "activeSessions");
      int members = 0;
      for (ObjectName channel : mbs.queryNames(new ObjectName("*:type=Channel,component=Channel,*"), null))
        members += ((Object[]) mbs.getAttribute(channel, "Members")).length;
      res.setContentType("application/json");
      res.getWriter().write("{\\"sessions\\":" + sessions + ",\\"members\\":" + members 
          + ",\\"server\\":\\"" + getServletContext().getServerInfo() + "\\"}");
    } catch (Exception e) {
      throw new IOException(e);
    }
  }
}
`;

function webXml(part: number): string {
  return `<?xml version="1.0" encoding="UTF-8"?>
<web-app xmlns="https://jakarta.ee/xml/ns/jakartaee" version="6.0" metadata-complete="true">
  <distributable/>
  <servlet>
    <servlet-name>bench</servlet-name>
    <servlet-class>MemoryBench</servlet-class>
    <init-param><param-name>part</param-name><param-value>${part}</param-value></init-param>
  </servlet>
  <servlet-mapping><servlet-name>bench</servlet-name><url-pattern>/w</url-pattern></servlet-mapping>
  <session-config><session-timeout>60</session-timeout><tracking-mode>COOKIE</tracking-mode></session-config>
</web-app>
`;
}

interface Instance {
  name: 'served' | 'joined';
  base: string;
  http: number;
  tribes: number;
  id: number;
}

/** server.xml of one instance: an HTTP connector, and a SimpleTcpCluster with the DeltaManager whose only static member is the peer. */
function serverXml(self: Instance, peer: Instance, appBase: string): string {
  const uid = (id: number) => `{${[...Array(15).fill(0), id].join(',')}}`;
  return `<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="NONE">
  <Service name="Catalina">
    <Connector port="${self.http}" address="127.0.0.1" protocol="HTTP/1.1" maxKeepAliveRequests="-1" />
    <Engine name="Catalina" defaultHost="localhost" jvmRoute="${self.name}">
      <Cluster className="org.apache.catalina.ha.tcp.SimpleTcpCluster" channelSendOptions="8">
        <Manager className="org.apache.catalina.ha.session.DeltaManager" expireSessionsOnShutdown="false"
                 stateTransferTimeout="600" sendAllSessionsWaitTime="0" />
        <Channel className="org.apache.catalina.tribes.group.GroupChannel">
          <Membership className="org.apache.catalina.tribes.membership.StaticMembershipService">
            <LocalMember className="org.apache.catalina.tribes.membership.StaticMember" uniqueId="${uid(self.id)}" />
            <Member className="org.apache.catalina.tribes.membership.StaticMember"
                    host="127.0.0.1" port="${peer.tribes}" uniqueId="${uid(peer.id)}" />
          </Membership>
          <Receiver className="org.apache.catalina.tribes.transport.nio.NioReceiver"
                    address="127.0.0.1" port="${self.tribes}" autoBind="0" />
          <Sender className="org.apache.catalina.tribes.transport.ReplicationTransmitter">
            <!-- a state-transfer block is about 1.3 MB; under load its ack can take longer than the default 3 s -->
            <Transport className="org.apache.catalina.tribes.transport.nio.PooledParallelSender" timeout="60000" />
          </Sender>
          <Interceptor className="org.apache.catalina.tribes.group.interceptors.TcpFailureDetector" />
          <Interceptor className="org.apache.catalina.tribes.group.interceptors.MessageDispatchInterceptor" />
        </Channel>
        <Valve className="org.apache.catalina.ha.tcp.ReplicationValve" filter="" />
        <ClusterListener className="org.apache.catalina.ha.session.ClusterSessionListener" />
      </Cluster>
      <Host name="localhost" appBase="${appBase}" unpackWARs="false" autoDeploy="false" deployOnStartup="true" />
    </Engine>
  </Service>
</Server>
`;
}

interface HeapReading {
  used: number;
  live: number;
  /** Live bytes and instances by class name. */
  classes: Map<string, { bytes: number; instances: number }>;
}

/** Heap used after a full collection and the live bytes per class, read with jcmd. */
async function heapOf(pid: number): Promise<HeapReading> {
  const jcmd = (...args: string[]) => run('jcmd', [String(pid), ...args], { maxBuffer: 64 << 20 });
  await jcmd('GC.run');
  await jcmd('GC.run');
  const info = (await jcmd('GC.heap_info')).stdout;
  const used = /heap\s+total \d+K, used (\d+)K/.exec(info);
  if (!used) throw new Error(`unexpected GC.heap_info output: ${info.slice(0, 400)}`);
  const histogram = (await jcmd('GC.class_histogram')).stdout;
  const classes = new Map<string, { bytes: number; instances: number }>();
  for (const m of histogram.matchAll(/^\s*\d+:\s+(\d+)\s+(\d+)\s+(\S+)/gm))
    classes.set(m[3]!, { bytes: Number(m[2]), instances: Number(m[1]) });
  const total = /^Total\s+\d+\s+(\d+)/m.exec(histogram);
  if (!total) throw new Error(`unexpected GC.class_histogram output: ${histogram.slice(-400)}`);
  return { used: Number(used[1]) * 1024, live: Number(total[1]), classes };
}

function perSession(
  instance: Instance,
  before: HeapReading,
  after: HeapReading,
  sessions: number,
  attributeBytes: number,
  held: number,
): TomcatMemoryRow {
  const topClasses = [...after.classes]
    .map(([name, { bytes, instances }]) => {
      const was = before.classes.get(name) ?? { bytes: 0, instances: 0 };
      return {
        name,
        bytesPerSession: (bytes - was.bytes) / sessions,
        instancesPerSession: (instances - was.instances) / sessions,
      };
    })
    .sort((a, b) => b.bytesPerSession - a.bytesPerSession)
    .slice(0, 8)
    .map((c) => ({
      name: c.name,
      bytesPerSession: Math.round(c.bytesPerSession),
      instancesPerSession: Math.round(c.instancesPerSession * 100) / 100,
    }));
  return {
    node: instance.name,
    sessions,
    attributeBytes,
    heapBytesPerSession: Math.round((after.used - before.used) / sessions),
    liveBytesPerSession: Math.round((after.live - before.live) / sessions),
    held,
    topClasses,
  };
}

/** Runs the Tomcat measurement (see the module comment); skips with a reason when Tomcat or a JDK is missing. */
export async function measureTomcatMemory(options: TomcatMemoryOptions): Promise<TomcatMemoryResult> {
  const reason = missing();
  if (reason) {
    options.log(`memory: Tomcat skipped: ${reason}`);
    return { skipped: reason, rows: [] };
  }
  const heap = options.heap ?? ['-Xms2g', '-Xmx2g'];
  const work = defaultGroup().workDir(undefined, 'sessrep-tomcat-memory-');
  const agent = new Agent({ keepAlive: true, maxSockets: 32 });
  const live: TrackedProcess[] = [];
  try {
    // The web application, shared by both instances (appBase outside the bases; each base has its own work/).
    const appBase = join(work.dir, 'webapps');
    const classes = join(appBase, 'app', 'WEB-INF', 'classes');
    mkdirSync(classes, { recursive: true });
    writeFileSync(join(appBase, 'app', 'WEB-INF', 'web.xml'), webXml(Math.floor(options.attributeBytes / 4)));
    writeFileSync(join(work.dir, 'MemoryBench.java'), SERVLET);
    await run('javac', [
      '-cp',
      join(CATALINA_HOME, 'lib', 'servlet-api.jar'),
      '-d',
      classes,
      join(work.dir, 'MemoryBench.java'),
    ]);
    const [served, joined] = (['served', 'joined'] as const).map((name, i) => ({
      name,
      base: join(work.dir, name),
      http: 0,
      tribes: 0,
      id: i + 1,
    }));
    for (const instance of [served!, joined!]) {
      instance.http = await freePort();
      instance.tribes = await freePort();
    }
    for (const [self, peer] of [
      [served!, joined!],
      [joined!, served!],
    ] as const) {
      for (const dir of ['conf', 'logs', 'temp', 'work']) mkdirSync(join(self.base, dir), { recursive: true });
      writeFileSync(join(self.base, 'conf', 'server.xml'), serverXml(self, peer, appBase));
    }

    const stats = async (instance: Instance) =>
      JSON.parse(await call(agent, instance.http, 'GET')) as {
        sessions: number;
        members: number;
        server: string;
      };
    const start = async (instance: Instance, sessions: number) => {
      const proc = spawnTracked(join(CATALINA_HOME, 'bin', 'catalina.sh'), ['run'], {
        name: `tomcat-${instance.name}`,
        maxOutputChars: 256 * 1024,
        logFile: join(instance.base, 'logs', 'console.log'),
        env: {
          ...process.env,
          CATALINA_HOME,
          CATALINA_BASE: instance.base,
          CATALINA_TMPDIR: join(instance.base, 'temp'),
          CATALINA_PID: '',
          CATALINA_OPTS: [...heap, '-XX:+UseG1GC'].join(' '),
          JAVA_OPTS: '-Djava.awt.headless=true',
        },
      });
      live.push(proc);
      // catalina.sh run execs the JVM, so the child's pid is the JVM's. The connector opens after the
      // application started, and the DeltaManager's start waits for the state transfer.
      await waitFor(`${instance.name} to serve`, () => stats(instance), {
        timeoutMs: 600_000,
        intervalMs: 100,
        process: proc,
      });
      // Blocks dispatched on several threads may still be applied just after the transfer's end.
      await waitFor(
        `${instance.name} to hold the ${sessions} sessions of the state transfer`,
        async () => (await stats(instance)).sessions === sessions,
        { timeoutMs: 30_000, intervalMs: 100, process: proc },
      );
      return proc;
    };
    const stop = async (proc: TrackedProcess) => {
      await proc.stop(30_000);
      live.splice(live.indexOf(proc), 1);
    };
    const create = async (instance: Instance, count: number) => {
      for (let i = 0; i < count; i += 64)
        await Promise.all(Array.from({ length: Math.min(64, count - i) }, () => call(agent, instance.http, 'POST')));
    };

    options.log(
      `memory: Tomcat (DeltaManager), ${options.sessions} sessions of ${options.attributeBytes} B of attributes`,
    );
    const servedProc = await start(served!, 0);
    await create(served!, WARMUP);
    let joinedProc = await start(joined!, WARMUP);
    const joinedBefore = await heapOf(joinedProc.pid);
    await stop(joinedProc);
    await waitFor(`${served!.name} to see the peer leave`, async () => (await stats(served!)).members === 0, {
      timeoutMs: 60_000,
      intervalMs: 100,
    });
    const servedBefore = await heapOf(servedProc.pid);
    const created = performance.now();
    await create(served!, options.sessions);
    const createSec = (performance.now() - created) / 1000;
    const servedAfter = await heapOf(servedProc.pid);
    const held = WARMUP + options.sessions;
    const joining = performance.now();
    joinedProc = await start(joined!, held);
    const joinSec = (performance.now() - joining) / 1000;
    const joinedAfter = await heapOf(joinedProc.pid);
    const info = await stats(joined!);
    const flags = (await run('jcmd', [String(joinedProc.pid), 'VM.flags'])).stdout
      .split('\n')
      .slice(1)
      .join(' ')
      .trim();
    const java = (await run('java', ['-version'])).stderr.split('\n')[1]?.trim() ?? 'unknown';
    const rows = [
      perSession(
        served!,
        servedBefore,
        servedAfter,
        options.sessions,
        options.attributeBytes,
        (await stats(served!)).sessions,
      ),
      perSession(joined!, joinedBefore, joinedAfter, options.sessions, options.attributeBytes, info.sessions),
    ];
    for (const row of rows)
      options.log(
        `  Tomcat ${row.node}: ${row.heapBytesPerSession} B of heap per session (live ${row.liveBytesPerSession} B, ${row.held} held)`,
      );
    return {
      version: info.server,
      java,
      jvmFlags: flags,
      rows,
      createSec: Math.round(createSec * 10) / 10,
      joinSec: Math.round(joinSec * 10) / 10,
    };
  } catch (error) {
    const output = live.map((p) => `${p.name}:\n${tail(p.output(), 3000)}`).join('\n');
    throw new Error(`${error instanceof Error ? error.message : String(error)}\n${output}`);
  } finally {
    await Promise.all(live.map((p) => p.stop(30_000)));
    agent.destroy();
    work.remove();
  }
}

/** One request to the bench servlet (`POST` creates a session, `GET` reads the counts); resolves with the body. */
function call(agent: Agent, port: number, method: 'GET' | 'POST'): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/app/w', method, agent, timeout: 30_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () =>
        res.statusCode === 200
          ? resolve(body)
          : reject(new Error(`${method} /app/w: ${res.statusCode} ${body.slice(0, 200)}`)),
      );
    });
    req.on('timeout', () => req.destroy(new Error(`${method} /app/w timed out`)));
    req.on('error', reject);
    req.end();
  });
}
