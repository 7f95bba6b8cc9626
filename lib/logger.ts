/** The logger contract the library writes to (pino-compatible), and a console fallback. */

/** A structured log call: fields first, message second, as pino takes them. */
export type LogFn = (fields: Record<string, unknown>, message: string) => void;

/** What the library needs from a logger; a pino logger satisfies it. */
export interface Logger {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  /** A logger that adds `fields` to every line. */
  child(fields: Record<string, unknown>): Logger;
}

const LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;
/** Log levels, least severe first; `silent` logs nothing. */
export type LogLevel = (typeof LEVELS)[number];

/** Where `consoleLogger` sends a finished line (without a trailing newline). */
export type LogSink = (line: string, level: Exclude<LogLevel, 'silent'>) => void;

/** The default sink: `console.error` for errors, `console.warn` for warnings, `console.log` otherwise. */
const toConsole: LogSink = (line, level) =>
  (level === 'error' ? console.error : level === 'warn' ? console.warn : console.log)(line);

/**
 * A logger writing one JSON object per line, for runtimes without pino. `sink` receives each line
 * (default: the console); a runtime whose console decorates lines passes a raw writer instead.
 */
export function consoleLogger(
  level: LogLevel = 'warn',
  bound: Record<string, unknown> = {},
  sink: LogSink = toConsole,
): Logger {
  const min = LEVELS.indexOf(level);
  const at =
    (name: Exclude<LogLevel, 'silent'>): LogFn =>
    (fields, message) => {
      if (LEVELS.indexOf(name) < min) return;
      sink(JSON.stringify({ level: name, time: Date.now(), ...bound, ...fields, msg: message }, jsonSafe), name);
    };
  return {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (fields) => consoleLogger(level, { ...bound, ...fields }, sink),
  };
}

function jsonSafe(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Error) return { name: value.name, message: value.message };
  return value;
}

/** Characters of a session key that logs and status pages show: enough to correlate, useless as a credential. */
export const SESSION_PREFIX_LENGTH = 8;

/**
 * Log fields naming the sessions a line is about: `session` is the first key's prefix (so every line
 * about a session can be found by its prefix), `sessions` lists up to 20 prefixes when there are more.
 */
export function sessionFields(keys: readonly string[]): { session?: string; sessions?: string[] } {
  if (keys.length === 0) return {};
  const session = keys[0]!.slice(0, SESSION_PREFIX_LENGTH);
  if (keys.length === 1) return { session };
  return { session, sessions: keys.slice(0, 20).map((key) => key.slice(0, SESSION_PREFIX_LENGTH)) };
}
