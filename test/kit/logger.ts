// Owns: loggers for tests: one that keeps lines in memory (to assert on warnings) and one that writes nothing.
import { consoleLogger, type Logger } from '../../lib/index.ts';

/** One captured log line. */
export interface LogLine {
  level: 'debug' | 'info' | 'warn' | 'error';
  fields: Record<string, unknown>;
  message: string;
}

/** A logger that keeps every line in `lines` (children share it, with their bound fields merged in). */
export function memoryLogger(
  lines: LogLine[] = [],
  bound: Record<string, unknown> = {},
): Logger & { lines: LogLine[] } {
  const at = (level: LogLine['level']) => (fields: Record<string, unknown>, message: string) =>
    void lines.push({ level, fields: { ...bound, ...fields }, message });
  return {
    lines,
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (fields) => memoryLogger(lines, { ...bound, ...fields }),
  };
}

/** A logger that writes nothing, so expected warnings do not clutter test output. */
export const silentLogger: Logger = consoleLogger('silent');
