// Leveled logging to stderr. Guest-caused errors go through rateLimited(): a guest can trigger
// millions of them and must not be able to flood the host's logs (reliability.md V8.4).

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
type MessageLevel = Exclude<LogLevel, 'silent'>;

export function isLogLevel(s: string): s is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(s);
}

export interface LogSink {
  write(line: string): void;
}

const RATE_WINDOW_MS = 10_000;
const RATE_BURST = 5;

export class Logger {
  private readonly threshold: number;
  private readonly windows = new Map<string, { start: number; count: number; suppressed: number }>();

  constructor(
    level: LogLevel = 'info',
    private readonly sink: LogSink = process.stderr,
    private readonly prefix = '',
  ) {
    this.threshold = LOG_LEVELS.indexOf(level);
  }

  child(prefix: string): Logger {
    const c = Object.create(this) as Logger;
    (c as unknown as { prefix: string }).prefix = this.prefix ? `${this.prefix} ${prefix}` : prefix;
    return c;
  }

  enabled(level: MessageLevel): boolean {
    return LOG_LEVELS.indexOf(level) >= this.threshold;
  }

  log(level: MessageLevel, msg: string): void {
    if (!this.enabled(level)) return;
    const p = this.prefix ? `${this.prefix}: ` : '';
    this.sink.write(`${new Date().toISOString()} ${level.padEnd(5)} ${p}${msg}\n`);
  }

  debug(msg: string): void { this.log('debug', msg); }
  info(msg: string): void { this.log('info', msg); }
  warn(msg: string): void { this.log('warn', msg); }
  error(msg: string): void { this.log('error', msg); }

  /** At most RATE_BURST messages per key per window; the next window reports how many were dropped. */
  rateLimited(key: string, level: MessageLevel, msg: string): void {
    const now = Date.now();
    let w = this.windows.get(key);
    if (!w || now - w.start >= RATE_WINDOW_MS) {
      if (w && w.suppressed > 0) this.log(level, `(${w.suppressed} similar messages suppressed) [${key}]`);
      w = { start: now, count: 0, suppressed: 0 };
      this.windows.set(key, w);
    }
    if (w.count < RATE_BURST) {
      w.count++;
      this.log(level, msg);
    } else {
      w.suppressed++;
    }
  }
}
