// A stand-in for build/Release/vhost_loadgen with the same command line and --json object, for
// testing the harness's plumbing (process handling, pinning, CPU sampling, reports) without the
// native generator: `node dist/bench/run.js --loadgen dist/bench/matrix/fake-loadgen.js ...`.
// It checks that the socket exists, sleeps for ramp + runtime and prints made-up numbers shaped
// like the real ones. It never connects: the backends see no traffic.
//
// VST_FAKE_LOADGEN_FAIL=errors  report errors=3 and exit 1 (a run with failed I/O)
// VST_FAKE_LOADGEN_FAIL=exit    print a message on stderr and exit 3 (a timeout-like failure)
// VST_FAKE_LOADGEN_FAIL=hang    never exit (the harness must kill it)

import { statSync } from 'node:fs';

function fail(msg: string): never {
  process.stderr.write(`fake-loadgen: ${msg}\n`);
  process.exit(2);
}

function parseBs(v: string): number {
  const m = /^(\d+)([kKmM]?)$/.exec(v);
  if (m === null) fail(`--bs: bad size ${JSON.stringify(v)}`);
  return Number(m[1]) * (m[2] === '' ? 1 : /k/i.test(m[2]) ? 1024 : 1024 * 1024);
}

function main(): void {
  const a = new Map<string, string>();
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (k === '--json' || k === '--quiet' || k === '--verify') {
      a.set(k, '');
      continue;
    }
    if (!k.startsWith('--') || argv[i + 1] === undefined) fail(`bad argument ${JSON.stringify(k)}`);
    a.set(k, argv[++i]);
  }
  const socket = a.get('--socket') ?? fail('--socket is required');
  try {
    if (!statSync(socket).isSocket()) fail(`${socket} is not a socket`);
  } catch {
    fail(`cannot connect to ${socket}: no such socket`);
  }
  const proto = a.get('--proto') ?? 'scsi';
  const rw = a.get('--rw') ?? 'randread';
  const bs = parseBs(a.get('--bs') ?? '4k');
  const iodepth = Number(a.get('--iodepth') ?? 1);
  const queues = Number(a.get('--queues') ?? 1);
  const mode = a.get('--mode') ?? 'irq';
  const runtime = Number(a.get('--runtime') ?? 1);
  const ramp = Number(a.get('--ramp') ?? 0);
  const failMode = process.env.VST_FAKE_LOADGEN_FAIL;
  if (failMode === 'hang') {
    setInterval(() => undefined, 1000);
    return;
  }
  setTimeout(() => {
    if (failMode === 'exit') {
      process.stderr.write('fake-loadgen: no completion for 10 s; outstanding: 32 requests\n');
      process.exit(3);
    }
    const jitter = 0.95 + Math.random() * 0.1;
    const perQueue = iodepth === 1 ? (mode === 'poll' ? 60_000 : 18_000) : 150_000 + 1_000 * Math.min(iodepth, 64);
    const sizeFactor = bs <= 4096 ? 1 : Math.min(1, (4096 * 10) / bs);
    const iops = perQueue * sizeFactor * Math.sqrt(queues) * (proto === 'blk' ? 1.05 : 1) * jitter;
    const ios = Math.round(iops * runtime);
    const p50 = (1e6 / iops) * iodepth * queues * 0.95;
    const kicks = Math.round(ios * (iodepth === 1 ? 1 : 0.05));
    const calls = mode === 'poll' ? 0 : Math.round(ios * (iodepth === 1 ? 1 : 0.08));
    const errors = failMode === 'errors' ? 3 : 0;
    const out = {
      proto, rw, bs, iodepth, queues, mode, eventIdx: (a.get('--event-idx') ?? 'on') === 'on', runtime,
      ios, bytes: ios * bs, iops, mbps: (iops * bs) / 1e6,
      lat_us: { mean: p50 * 1.05, p50, p99: p50 * 2.5, p999: p50 * 5, max: p50 * 20 },
      kicks, calls, kicks_per_io: kicks / ios, calls_per_io: calls / ios, errors, verify_errors: 0,
      per_queue: Array.from({ length: queues }, () => ({ ios: Math.round(ios / queues), kicks: Math.round(kicks / queues), calls: Math.round(calls / queues) })),
    };
    process.stdout.write(`${JSON.stringify(out)}\n`);
    process.exitCode = errors > 0 ? 1 : 0;
  }, (ramp + runtime) * 1000);
}

main();
