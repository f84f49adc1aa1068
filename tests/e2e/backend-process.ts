// Runs the real CLI (dist/backend/cli.js) as a child process, the way a person starts it.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

export const CLI = join(__dirname, '..', '..', 'backend', 'cli.js');

export interface BackendProcess {
  process: ChildProcess;
  output(): string;
  waitFor(re: RegExp, timeoutMs?: number): Promise<void>;
  /** SIGTERM and wait for the exit code. */
  stop(): Promise<number | null>;
  exited: Promise<number | null>;
}

export function spawnBackend(args: string[]): BackendProcess {
  const child = spawn(process.execPath, [CLI, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const listeners = new Set<() => void>();
  const onData = (d: Buffer): void => {
    out += d.toString();
    for (const l of listeners) l();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  return {
    process: child,
    output: () => out,
    exited,
    waitFor(re, timeoutMs = 15_000) {
      return new Promise((res, rej) => {
        const check = (): void => {
          if (re.test(out)) {
            listeners.delete(check);
            clearTimeout(timer);
            res();
          }
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          rej(new Error(`backend did not print ${re} within ${timeoutMs} ms; output:\n${out}`));
        }, timeoutMs);
        listeners.add(check);
        exited.then(() => {
          if (!re.test(out)) {
            listeners.delete(check);
            clearTimeout(timer);
            rej(new Error(`backend exited before printing ${re}; output:\n${out}`));
          }
        });
        check();
      });
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}
