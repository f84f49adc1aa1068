// Facts about the machine and the software under test, recorded with every result.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as os from 'node:os';
import { clkTck } from '../procfs';

function run(cmd: string, args: string[], cwd?: string): string | null {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', cwd, stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

/** SHA-256 of a file's bytes, or null if it cannot be read. */
export function sha256(path: string): string | null {
  try {
    return createHash('sha256').update(readFileSync(path)).digest('hex');
  } catch {
    return null;
  }
}

export interface MachineFacts {
  nproc: number;
  cpuModel: string;
  /** flags that change what the numbers mean here */
  hypervisor: boolean;
  kernel: string;
  kernelCmdline: string;
  memTotalKiB: number;
  clkTck: number;
  node: string;
  qsdVersion: string;
  gitCommit: string;
  gitDirty: boolean;
  loadgen: string;
  loadgenSha256: string | null;
  hostname: string;
}

export function machineFacts(repo: string, loadgen: string, qsd: string | null): MachineFacts {
  const cpuinfo = (() => {
    try {
      return readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      return '';
    }
  })();
  const name = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model ?? 'unknown';
  const family = /^cpu family\s*:\s*(\d+)/m.exec(cpuinfo)?.[1];
  const modelNo = /^model\s*:\s*(\d+)/m.exec(cpuinfo)?.[1];
  // Virtual CPUs often carry a bare brand string ("AMD EPYC"); family/model tell the generation.
  const model = family !== undefined && modelNo !== undefined ? `${name} (family ${family}, model ${modelNo})` : name;
  const meminfo = (() => {
    try {
      return readFileSync('/proc/meminfo', 'utf8');
    } catch {
      return '';
    }
  })();
  const nproc = Number(run('nproc', []) ?? os.cpus().length);
  return {
    nproc,
    cpuModel: model,
    hypervisor: /^flags\s*:.*\bhypervisor\b/m.test(cpuinfo),
    kernel: os.release(),
    kernelCmdline: (() => {
      try {
        return readFileSync('/proc/cmdline', 'utf8').trim();
      } catch {
        return '';
      }
    })(),
    memTotalKiB: Number(/^MemTotal:\s*(\d+)/m.exec(meminfo)?.[1] ?? 0),
    clkTck: clkTck(),
    node: process.version,
    qsdVersion: qsd === null ? 'qemu-storage-daemon not installed' : (run(qsd, ['--version'])?.split('\n')[0] ?? 'unknown'),
    gitCommit: run('git', ['rev-parse', 'HEAD'], repo) ?? 'unknown',
    gitDirty: (run('git', ['status', '--porcelain', '--untracked-files=no'], repo) ?? '') !== '',
    loadgen,
    loadgenSha256: sha256(loadgen),
    hostname: os.hostname(),
  };
}

/** The full path of an executable on PATH, or null. */
export function which(cmd: string): string | null {
  return run('sh', ['-c', `command -v "$1"`, 'sh', cmd]);
}
