/** The default logger of a Lambda node. */
import { consoleLogger, type Logger, type LogLevel } from '../../lib/logger.ts';

/**
 * A logger writing one raw JSON object per line to stdout. `console.log` in Lambda prefixes each
 * line with a timestamp and request id, which stops CloudWatch JSON metric filters
 * (`{ $.level = "error" }`) from matching; lines written to stdout reach the log as they are.
 */
export function lambdaLogger(level: LogLevel = 'warn'): Logger {
  return consoleLogger(level, {}, (line) => void process.stdout.write(`${line}\n`));
}
