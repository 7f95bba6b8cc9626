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

/** A logger writing JSON lines through `console`, for runtimes without pino. */
export function consoleLogger(level: LogLevel = 'warn', bound: Record<string, unknown> = {}): Logger {
  const min = LEVELS.indexOf(level);
  const at =
    (name: Exclude<LogLevel, 'silent'>): LogFn =>
    (fields, message) => {
      if (LEVELS.indexOf(name) < min) return;
      const line = JSON.stringify({ level: name, time: Date.now(), ...bound, ...fields, msg: message }, jsonSafe);
      (name === 'error' ? console.error : name === 'warn' ? console.warn : console.log)(line);
    };
  return {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (fields) => consoleLogger(level, { ...bound, ...fields }),
  };
}

function jsonSafe(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Error) return { name: value.name, message: value.message };
  return value;
}
