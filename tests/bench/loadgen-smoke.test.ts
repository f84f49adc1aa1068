// Smoke test of the native load generator (bench/loadgen/) against the real backend CLI: data
// is verified byte for byte on a RAM and a file LUN, with reads and with writes, in irq and
// poll mode, with and without EVENT_IDX, on one and two request queues. No timing is asserted.
import t, { type Test } from 'tap';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI } from '../e2e/backend-process';

// dist/tests/bench → the repository root, where node-gyp puts build/.
const LOADGEN = join(__dirname, '..', '..', '..', 'build', 'Release', 'vhost_loadgen');

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runLoadgen(args: string[]): Promise<RunResult> {
  return new Promise((resolve) => {
    // A generous outer limit: the generator's own watchdog ends a stuck run after 10 s.
    execFile(LOADGEN, args, { timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

interface Summary {
  ios: number;
  errors: number;
  verify_errors: number;
  kicks: number;
  calls: number;
  mode: string;
  eventIdx: boolean;
  queues: number;
  per_queue: { ios: number; kicks: number; calls: number }[];
}

if (!existsSync(LOADGEN)) {
  t.fail(`${LOADGEN} is missing: run \`npm install\` (node-gyp builds the vhost_loadgen executable from binding.gyp)`);
} else {
  const dir = mkdtempSync(join(tmpdir(), 'vst-loadgen-'));
  const socket = join(dir, 's.sock');
  const shmDir = existsSync('/dev/shm') ? mkdtempSync('/dev/shm/vst-loadgen-') : dir;
  let backend: ChildProcess | null = null;
  let backendOutput = '';

  t.teardown(async () => {
    if (backend && backend.exitCode === null && backend.signalCode === null) {
      const exited = new Promise((res) => backend!.once('exit', res));
      backend.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
    rmSync(shmDir, { recursive: true, force: true });
  });

  t.before(async () => {
    backend = spawn(
      process.execPath,
      // Every I/O engine a file LUN can get: LUN 1 io=auto off tmpfs (the io_uring where the kernel
      // allows it), LUN 2 inline (tmpfs, or forced), LUN 3 the addon's threads. --poll-us runs the
      // spin-before-sleep path too.
      [CLI, 'serve', '--socket', socket, '--lun', '0:ram:size=64M', '--lun', `1:file:path=${join(dir, 'd.img')},size=64M`,
        '--lun', `2:file:path=${join(shmDir, 'i.img')},size=64M${shmDir === dir ? ',io=inline' : ''}`,
        '--lun', `3:file:path=${join(dir, 't.img')},size=64M,io=threads`,
        '--queues', '2', '--poll-us', '20', '--log-level', 'warn'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    backend.stdout!.on('data', (d: Buffer) => { backendOutput += d.toString(); });
    backend.stderr!.on('data', (d: Buffer) => { backendOutput += d.toString(); });
    const deadline = Date.now() + 15_000;
    while (!existsSync(socket)) {
      if (backend.exitCode !== null) throw new Error(`backend exited with ${backend.exitCode}:\n${backendOutput}`);
      if (Date.now() > deadline) throw new Error(`backend did not create ${socket} within 15 s:\n${backendOutput}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  async function check(t: Test, name: string, args: string[]): Promise<Summary | null> {
    const r = await runLoadgen(['--socket', socket, '--json', '--quiet', ...args]);
    const context = `${name}\nstderr:\n${r.stderr}\nbackend:\n${backendOutput}`;
    t.equal(r.code, 0, `${name}: exit status 0`, { context });
    let s: Summary;
    try {
      s = JSON.parse(r.stdout) as Summary;
    } catch {
      t.fail(`${name}: stdout is one JSON object`, { stdout: r.stdout, context });
      return null;
    }
    t.equal(s.errors, 0, `${name}: no I/O errors`);
    t.equal(s.verify_errors, 0, `${name}: no verify errors`);
    t.ok(s.ios > 0, `${name}: I/Os completed (${s.ios})`);
    t.ok(s.kicks > 0, `${name}: kicks counted`);
    t.equal(s.per_queue.length, s.queues, `${name}: one per-queue entry per queue`);
    return s;
  }

  t.test('RAM LUN: randread --verify, 2 queues, irq mode, EVENT_IDX on', async (t) => {
    const s = await check(t, 'ram randread', [
      '--lun', '0', '--rw', 'randread', '--verify', '--size', '4M', '--bs', '4k', '--iodepth', '16',
      '--queues', '2', '--mode', 'irq', '--event-idx', 'on', '--runtime', '1',
    ]);
    if (s) {
      t.equal(s.mode, 'irq');
      t.equal(s.eventIdx, true);
      t.ok(s.calls > 0, 'irq mode: calls counted');
      t.ok(s.per_queue.every((q) => q.ios > 0), `both request queues completed I/O (${s.per_queue.map((q) => q.ios).join(', ')})`);
    }
  });

  t.test('file LUN: randread --verify, 1 queue, poll mode, EVENT_IDX off', async (t) => {
    const s = await check(t, 'file randread', [
      '--lun', '1', '--rw', 'randread', '--verify', '--size', '4M', '--bs', '8k', '--iodepth', '8',
      '--queues', '1', '--mode', 'poll', '--event-idx', 'off', '--runtime', '1',
    ]);
    if (s) {
      t.equal(s.mode, 'poll');
      t.equal(s.eventIdx, false);
      t.equal(s.calls, 0, 'poll mode reads no calls');
    }
  });

  t.test('file LUN: randwrite --verify (generations, read-back), 2 queues, indirect, EVENT_IDX off', async (t) => {
    const s = await check(t, 'file randwrite', [
      '--lun', '1', '--rw', 'randwrite', '--verify', '--size', '4M', '--bs', '4k', '--iodepth', '16',
      '--queues', '2', '--mode', 'irq', '--event-idx', 'off', '--indirect', '--runtime', '1',
    ]);
    if (s) t.ok(s.per_queue.every((q) => q.ios > 0), 'both request queues completed I/O');
  });

  for (const [lun, what] of [[0, 'RAM'], [2, 'inline file'], [3, 'thread-pool file']] as const) {
    t.test(`${what} LUN: randwrite --verify then read back`, async (t) => {
      await check(t, `${what} randwrite`, [
        '--lun', String(lun), '--rw', 'randwrite', '--verify', '--size', '2M', '--bs', '4k', '--iodepth', '16',
        '--queues', '1', '--runtime', '0.5',
      ]);
    });
  }

  t.test('nothing listening: a clear error, non-zero exit', async (t) => {
    const r = await runLoadgen(['--socket', join(dir, 'nothing.sock'), '--runtime', '1']);
    t.not(r.code, 0, 'exit status is not 0');
    t.match(r.stderr, /cannot connect to .*nothing\.sock: No such file or directory/);
    t.equal(r.stdout, '', 'nothing on stdout');
  });
}
