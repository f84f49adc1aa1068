// Tests of the matrix harness's pieces (not part of `npm test`, which runs nothing in bench/):
//   npx tsc -p . && npx tap dist/bench/matrix/matrix.test.js
// The last test runs the whole harness for a few seconds against our real ram backend with the
// fake generator (dist/bench/matrix/fake-loadgen.js), so it checks process handling, pinning,
// /proc sampling and the three output files without the native generator.

import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { BackendProcess, countGc, parseGcLine, type GcEvent } from '../../bench/matrix/backend-process';
import { parseGenOutput } from '../../bench/matrix/loadgen';
import { parseOptions, splitArgs, UsageError } from '../../bench/matrix/options';
import { buildPlan, bsArg, pointById, vqSizeFor, BACKEND_IDS, MODES, PLACEMENTS, POINTS } from '../../bench/matrix/plan';
import { isDisturbed, parseProcStat, parseStatCpuTicks, parseStatTimes } from '../../bench/procfs';
import { fmtCount, fmtRatio, markdownReport, printedReport, type ReportContext } from '../../bench/matrix/report';
import { evaluateTargets, summarizeCase, type CaseResult, type Sample } from '../../bench/matrix/results';
import { median, medianOrNull, ratio, rotate, spread } from '../../bench/stats';
import { renderSvg } from '../../bench/matrix/svg';

const defaults = { outDir: '/tmp/out', loadgen: '/x/vhost_loadgen' };
const REPO = path.resolve(__dirname, '..', '..', '..');

t.test('options: defaults, --quick, explicit values win', async (t) => {
  const d = parseOptions([], defaults);
  t.equal(d.runs, 5);
  t.equal(d.runtimeS, 3);
  t.equal(d.rampS, 0.5);
  t.equal(d.label, 'latest');
  t.same(d.points, POINTS.map((p) => p.id));
  t.same(d.backends, BACKEND_IDS);
  const q = parseOptions(['--quick'], defaults);
  t.equal(q.runs, 2);
  t.equal(q.runtimeS, 1);
  const q2 = parseOptions(['--runs', '3', '--quick', '--runtime=2'], defaults);
  t.equal(q2.runs, 3);
  t.equal(q2.runtimeS, 2);
  const o = parseOptions(['--points', 'rr4k-qd1,sr1m-qd8', '--backends', 'ours-ram', '--placements', 'same', '--modes', 'irq',
    '--label', 'ab-1', '--backend-args', '--engine uring "--x=a b"', '--cpu-prof'], defaults);
  t.same(o.points, ['rr4k-qd1', 'sr1m-qd8']);
  t.same(o.backends, ['ours-ram']);
  t.same(o.placements, ['same']);
  t.same(o.backendArgs, ['--engine', 'uring', '--x=a b']);
  t.equal(o.cpuProf, true);
});

t.test('options: every mistake is a UsageError naming the option', async (t) => {
  const bad: [string[], RegExp][] = [
    [['--runs', '0'], /--runs/],
    [['--runs', 'x'], /--runs/],
    [['--runtime', '-1'], /--runtime/],
    [['--runtime', '0.1'], /--runtime/],
    [['--ramp'], /--ramp needs a value/],
    [['--points', 'rr4k-qd2'], /--points: unknown "rr4k-qd2"/],
    [['--backends', 'spdk'], /--backends/],
    [['--placements', 'split,other'], /--placements/],
    [['--modes', ''], /--modes/],
    [['--label', '../x'], /--label/],
    [['--label', 'a b'], /--label/],
    [['--backend-args', '"open'], /unterminated/],
    [['--frobnicate'], /unknown option/],
    [['--runs', '2', '--runs', '3'], /given twice/],
    [['--quick=1'], /takes no value/],
  ];
  for (const [argv, re] of bad) t.throws(() => parseOptions(argv, defaults), re, argv.join(' '));
  let caught: unknown;
  try {
    parseOptions(['--runs', '0'], defaults);
  } catch (e) {
    caught = e;
  }
  t.ok(caught instanceof UsageError, 'a UsageError (exit status 2), not an internal error');
});

t.test('splitArgs', async (t) => {
  t.same(splitArgs(''), []);
  t.same(splitArgs('  a  b '), ['a', 'b']);
  t.same(splitArgs(`'x y' "p\\"q" ''`), ['x y', 'p"q', '']);
});

t.test('plan: the issue\'s matrix', async (t) => {
  const all = buildPlan({ points: POINTS.map((p) => p.id), placements: PLACEMENTS, modes: MODES, backends: BACKEND_IDS });
  const file = all.filter((c) => c.group === 'file');
  const ram = all.filter((c) => c.group === 'ram');
  // 9 points × 2 placements in irq, plus poll for rr4k QD1 and QD32 in split.
  t.equal(file.length, 9 * 2 + 2);
  t.same(file.filter((c) => c.mode === 'poll').map((c) => c.key), ['file/rr4k-qd1/split/poll', 'file/rr4k-qd32/split/poll']);
  t.same(ram.map((c) => c.key), ['ram/rr4k-qd32/split/irq', 'ram/rw4k-qd32/split/irq', 'ram/sr128k-qd32/split/irq']);
  t.same(file[0].backends, ['ours-file', 'qsd-native', 'qsd-threads']);
  t.same(ram[0].backends, ['ours-ram', 'qsd-null']);
  t.equal(new Set(all.map((c) => c.key)).size, all.length, 'keys unique');
  const some = buildPlan({ points: ['rr4k-qd32'], placements: ['same'], modes: ['irq'], backends: ['qsd-null', 'ours-file'] });
  t.same(some.map((c) => [c.key, c.backends]), [['file/rr4k-qd32/same/irq', ['ours-file']]]);
  t.same(buildPlan({ points: ['sr1m-qd8'], placements: ['split'], modes: ['poll'], backends: BACKEND_IDS }), []);
});

t.test('plan: ring size fits the depth with 3 descriptors per request', async (t) => {
  t.equal(vqSizeFor(pointById('rr4k-qd1')!), 256);
  t.equal(vqSizeFor(pointById('rr4k-qd32')!), 256);
  t.equal(vqSizeFor(pointById('rw4k-qd128')!), 512);
  t.equal(bsArg(4096), '4k');
  t.equal(bsArg(131072), '128k');
  t.equal(bsArg(1 << 20), '1m');
  t.equal(bsArg(512), '512');
});

t.test('--trace-gc lines (node 20 / V8 11.3)', async (t) => {
  t.same(parseGcLine('[7318:0x138f2490]       22 ms: Scavenge 3.8 (4.0) -> 3.4 (5.0) MB, 1.16 / 0.00 ms  (average mu = 1.000, current mu = 1.000) allocation failure; '),
    { kind: 'scavenge', pauseMs: 1.16 });
  t.same(parseGcLine('[7326:0x14a28490]      191 ms: Mark-Compact 61.6 (79.9) -> 51.7 (86.6) MB, 13.39 / 0.00 ms  (+ 3.2 ms in 31 steps since start of marking, biggest step 0.2 ms, walltime since start of marking 55 ms) (average mu = 1.000, current mu = 1.000) finalize incremental marking via stack guard; GC in old space requested'),
    { kind: 'mark-compact', pauseMs: 13.39 });
  t.same(parseGcLine('[1:0x1]  5 ms: Mark-Compact (reduce) 6.1 (9.0) -> 5.0 (8.0) MB, 2.5 / 0.0 ms  (average mu = 0.9) low memory notification'),
    { kind: 'mark-compact', pauseMs: 2.5 });
  t.same(parseGcLine('[1:0x1]  5 ms: Minor Mark-Compact 6.1 (9.0) -> 5.0 (8.0) MB, 0.5 / 0.0 ms  task'), { kind: 'minor-mc', pauseMs: 0.5 });
  t.equal(parseGcLine('vhost-scsi-ts: serving 1 LUN(s) on /tmp/s.sock'), null);
  t.equal(parseGcLine(''), null);
  const ev: GcEvent[] = [
    { t: 1, kind: 'scavenge', pauseMs: 1 }, { t: 5, kind: 'scavenge', pauseMs: 2 }, { t: 6, kind: 'mark-compact', pauseMs: 10 },
    { t: 9, kind: 'scavenge', pauseMs: 4 },
  ];
  t.same(countGc(ev, 2, 8), { scavenge: 1, markCompact: 1, minorMc: 0, other: 0, pauseMs: 12 });
});

t.test('BackendProcess: socket wait, pinning, GC lines collected from its log file, clean stop', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vst-bp-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const sock = path.join(dir, 's.sock');
  // A stand-in backend: allocates enough to scavenge, prints a line on stderr, listens, exits 0 on SIGTERM.
  const script = `let a=[];for(let i=0;i<2e6;i++){a.push({i});if(a.length>1e4)a=[]}
    console.error('hello from the backend');
    const s=require('net').createServer().listen(${JSON.stringify(sock)});
    process.on('SIGTERM',()=>{s.close();process.exit(0)});`;
  const bp = BackendProcess.start({ id: 'ours-ram', argv: [process.execPath, '--trace-gc', '-e', script], socket: sock, gcTrace: true, logPath: path.join(dir, 'log') }, 0);
  await bp.waitReady(20_000);
  t.same(bp.pin(0), ['0']);
  t.ok(bp.cpuTicks()! >= 0);
  bp.collect();
  const n = bp.gc.length;
  t.ok(n > 0, `scavenges seen (${n})`);
  t.ok(bp.gc.every((e) => e.kind === 'scavenge' || e.kind === 'mark-compact'));
  const now = performance.now();
  t.equal(bp.gcBetween(now, now + 1000).scavenge, 0, 'nothing after the last collect');
  t.equal(bp.gcBetween(0, now).scavenge + bp.gcBetween(0, now).markCompact, n);
  t.match(bp.outputTail(), /hello from the backend/);
  t.notMatch(bp.outputTail(), /Scavenge/, 'GC lines are not output lines');
  const ex = await bp.stop();
  t.same(ex, { code: 0, signal: null });
  t.equal(bp.alive, false);
});

t.test('/proc parsing', async (t) => {
  // comm may contain blanks and parentheses.
  const stat = '4242 (node (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 567 0 0 20 0 11 0 999 100 50 18446744073709551615';
  t.equal(parseStatCpuTicks(stat), 1234 + 567);
  const ps = parseProcStat('cpu  100 5 50 1000 7 3 2 9 0 0\ncpu0 50 2 25 500 3 1 1 4 0 0\nintr 1\n');
  t.same(ps, { busy: 100 + 5 + 50 + 3 + 2, idle: 1007, steal: 9 });
  t.throws(() => parseStatCpuTicks('garbage'));
});

t.test('shared helpers of every bench: median, proc times, disturbance', async (t) => {
  t.equal(median([3, 1, 2]), 2);
  t.equal(median([4, 1, 3, 2]), 2.5);
  t.throws(() => median([]), RangeError);
  t.equal(medianOrNull([null, 5, null, 7]), 6);
  t.equal(medianOrNull([null]), null);
  t.same(parseStatTimes('4242 (node (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 567 0 0 20 0 11'), { usr: 1234, sys: 567 },
    'fields 14 and 15, counted after the last ")"');
  t.equal(isDisturbed({ hostOtherPct: 10, hostStealPct: 15 }), false, 'the thresholds themselves are quiet');
  t.equal(isDisturbed({ hostOtherPct: 10.1, hostStealPct: null }), true);
  t.equal(isDisturbed({ hostOtherPct: null, hostStealPct: 15.1 }), true);
});

t.test('stats', async (t) => {
  t.same(spread([3, 1, 2]), { median: 2, min: 1, max: 3, n: 3 });
  t.same(spread([4, 1, 3, 2]), { median: 2.5, min: 1, max: 4, n: 4 });
  t.same(spread([null, 5, undefined, NaN]), { median: 5, min: 5, max: 5, n: 1 });
  t.equal(spread([]), null);
  t.equal(ratio(spread([2]), spread([4])), 0.5);
  t.equal(ratio(spread([2]), spread([0])), null);
  t.equal(ratio(null, spread([1])), null);
  t.same(rotate([1, 2, 3], 1), [2, 3, 1]);
  t.same(rotate([1, 2, 3], 4), [2, 3, 1]);
  t.same(rotate([], 2), []);
});

t.test('generator JSON', async (t) => {
  const good = {
    proto: 'scsi', rw: 'randread', bs: 4096, iodepth: 32, queues: 1, mode: 'irq', eventIdx: true, runtime: 3.0, ios: 600000, bytes: 600000 * 4096,
    iops: 200000, mbps: 819.2, lat_us: { mean: 160, p50: 150, p99: 300, p999: 500, max: 2000 }, kicks: 30000, calls: 40000,
    kicks_per_io: 0.05, calls_per_io: 0.0667, errors: 0, verify_errors: 0, per_queue: [{ ios: 600000, kicks: 30000, calls: 40000 }],
  };
  const r = parseGenOutput(`${JSON.stringify(good)}\n`);
  t.ok('result' in r && r.result.iops === 200000);
  t.match(parseGenOutput(''), { error: /no JSON/ });
  t.match(parseGenOutput('{"iops": 1'), { error: /not one JSON object/ });
  t.match(parseGenOutput('[1]'), { error: /not an object/ });
  t.match(parseGenOutput(JSON.stringify({ ...good, iops: 'many' })), { error: /iops/ });
  t.match(parseGenOutput(JSON.stringify({ ...good, lat_us: { p50: 1 } })), { error: /lat_us\.mean/ });
});

// A synthetic result set: ours-file beats qsd-native at QD32 but loses at QD1.
function sample(backend: Sample['backend'], run: number, iops: number, p50: number, scav = 0): Sample {
  return {
    run, slot: 0, backend, ok: true, command: [], exitCode: 0, exitSignal: null, timedOut: false, wallS: 3.5,
    result: {
      proto: 'scsi', rw: 'randread', bs: 4096, iodepth: 32, queues: 1, mode: 'irq', eventIdx: true, runtime: 3, ios: iops * 3, bytes: iops * 3 * 4096,
      iops, mbps: (iops * 4096) / 1e6, lat_us: { mean: p50, p50, p99: p50 * 2, p999: p50 * 3, max: p50 * 9 }, kicks: 0, calls: 0,
      kicks_per_io: 0.03, calls_per_io: 0.1, errors: 0, verify_errors: 0, per_queue: [],
    },
    window: { seconds: 2.75, backendCpuUs: iops * 2.75 * 4, generatorCpuUs: iops * 2.75, otherPct: 1, stealPct: 0, ios: iops * 2.75 },
    cpuUsPerIo: 4, generatorCpuUsPerIo: 1,
    gc: backend.startsWith('ours') ? { scavenge: scav, markCompact: 0, minorMc: 0, other: 0, pauseMs: 0, per100kScavenges: (scav / (iops * 2.75)) * 1e5 } : undefined,
    disturbed: false, backendAffinity: ['0'],
  };
}

function caseOf(key: string, pointId: string, backends: Sample['backend'][], samples: Sample[]): CaseResult {
  const [group, , placement, mode] = key.split('/') as ['file' | 'ram', string, 'split' | 'same', 'irq' | 'poll'];
  return { key, group, point: pointById(pointId)!, placement, mode, vqSize: 256, backendCpu: 0, generatorCpu: placement === 'split' ? 1 : 0, backends, samples };
}

const synthetic: CaseResult[] = [
  caseOf('file/rr4k-qd32/split/irq', 'rr4k-qd32', ['ours-file', 'qsd-native'], [
    sample('ours-file', 1, 250_000, 120), sample('ours-file', 2, 240_000, 125), sample('ours-file', 3, 260_000, 118, 1),
    sample('qsd-native', 1, 200_000, 150), sample('qsd-native', 2, 210_000, 148), { ...sample('qsd-native', 3, 1, 1), ok: false, failure: 'errors=3' },
  ]),
  caseOf('file/rr4k-qd1/split/irq', 'rr4k-qd1', ['ours-file', 'qsd-native'], [
    sample('ours-file', 1, 15_000, 60), sample('qsd-native', 1, 18_000, 50),
  ]),
  caseOf('file/rr4k-qd32-2q/split/irq', 'rr4k-qd32-2q', ['ours-file'], [sample('ours-file', 1, 340_000, 180)]),
];

t.test('summaries and targets', async (t) => {
  const s = synthetic.map(summarizeCase);
  const qd32 = s[0];
  t.equal(qd32.backends[0].iops!.median, 250_000);
  t.equal(qd32.backends[1].okRuns, 2);
  t.equal(qd32.backends[1].failedRuns, 1);
  t.equal(qd32.ratios[0].iops, 250_000 / 205_000);
  const targets = evaluateTargets(s);
  const byId = Object.fromEntries(targets.map((x) => [x.id, x]));
  t.equal(byId['rr4k-qd32-split'].status, 'met');
  t.equal(byId['rr4k-qd1-split-p50'].status, 'not met');
  t.equal(byId['rr4k-qd1-split-p50'].value, 60 / 50);
  t.equal(byId['rw4k-qd32-split'].status, 'n/a');
  t.match(byId['rw4k-qd32-split'].detail, /not run/);
  t.equal(byId['two-queues-split'].value, 340_000 / 250_000);
  t.equal(byId['two-queues-split'].status, 'met');
  // 1 scavenge over (250k + 240k + 260k + 15k + 340k) × 2.75 I/Os.
  t.equal(byId['gc-ours-file'].status, 'met');
  t.ok(Math.abs(byId['gc-ours-file'].value! - 1e5 / (1_105_000 * 2.75)) < 1e-9);
  t.equal(byId['gc-ours-ram'].status, 'n/a');
});

t.test('formatting, reports and the chart', async (t) => {
  t.equal(fmtCount(215_432), '215k');
  t.equal(fmtCount(21_543), '21.5k');
  t.equal(fmtCount(1_234_567), '1.23M');
  t.equal(fmtCount(950), '950');
  t.equal(fmtRatio(1.2345), '1.23×');
  t.equal(fmtRatio(0.9961, 1), '0.996×', 'a miss is not rounded onto the threshold');
  t.equal(fmtRatio(null), '—');
  const s = synthetic.map(summarizeCase);
  const targets = evaluateTargets(s);
  const ctx: ReportContext = {
    label: 't', command: 'npm run bench', startedAt: '2026-01-01T00:00:00Z', runs: 3, runtimeS: 3, rampS: 0.5, cpuProf: false,
    aborted: null, machine: { cpuModel: 'cpu', nproc: 2, kernel: '6.x', node: 'v20', qsdVersion: 'qsd 10', gitCommit: 'abc', gitDirty: false },
    backendCommands: { 'ours-file': 'node dist/backend/cli.js serve …' }, notes: ['a note'], failures: ['file/rr4k-qd32/split/irq run 3 qsd-native: errors=3'],
  };
  const text = printedReport(s, targets, ctx);
  t.match(text, /rr4k-qd32\s+split\s+irq\s+ours-file\s+250k \[240k–260k\]/);
  t.match(text, /qsd-native\s+205k \[200k–210k\].*1\.22×/);
  t.match(text, /1 failed run/);
  const md = markdownReport(s, targets, ctx);
  t.match(md, /^# Load-generator matrix/);
  t.match(md, /\| 4 KiB random read QD32, split: IOPS ours-file \/ qsd-native \| ≥ 1\.0× \| 1\.22× \| met \|/);
  t.match(md, /## Failed runs/);
  t.match(md, /`npm run bench`|npm run bench/);
  const svg = renderSvg(s, 'title <&>', 'sub');
  t.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  t.match(svg, /title &lt;&amp;&gt;/);
  t.equal((svg.match(/<rect /g) ?? []).length, 1 + 2 + 2 + 2 + 1, 'background, legend swatches, one bar per backend with data');
  t.match(svg, /<\/svg>\n$/);
  t.notMatch(svg, /NaN|undefined|Infinity/);
});

t.test('the whole harness with the fake generator against our ram backend', { timeout: 120_000 }, async (t) => {
  const run = path.join(REPO, 'dist', 'bench', 'run.js');
  const fake = path.join(REPO, 'dist', 'bench', 'matrix', 'fake-loadgen.js');
  if (!existsSync(path.join(REPO, 'dist', 'backend', 'cli.js'))) {
    t.fail('dist/backend/cli.js is missing: run npx tsc -p . first');
    return;
  }
  const out = mkdtempSync(path.join(tmpdir(), 'vst-matrix-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  const base = ['--loadgen', fake, '--backends', 'ours-ram', '--points', 'rr4k-qd1,rr4k-qd32', '--runs', '2', '--runtime', '0.5', '--ramp', '0',
    '--warmup', '0.2', '--out', out];
  const r = spawnSync(process.execPath, [run, ...base, '--label', 'ok'], { encoding: 'utf8', timeout: 100_000 });
  t.equal(r.status, 0, r.stderr);
  const j = JSON.parse(readFileSync(path.join(out, 'ok.json'), 'utf8'));
  t.equal(j.aborted, null);
  t.same(j.cases.map((c: CaseResult) => c.key), ['ram/rr4k-qd32/split/irq'], 'ours-ram runs only the ram comparison');
  const samples: Sample[] = j.cases[0].samples;
  t.equal(samples.length, 2);
  for (const s of samples) {
    t.equal(s.ok, true);
    t.same(s.backendAffinity, ['0']);
    t.ok(s.window !== undefined && s.window.seconds > 0.2, 'CPU window sampled inside the run');
    t.ok(s.gc !== undefined, 'GC counted for ours');
    t.match(s.command.slice(0, 3), ['taskset', '-c', '1']);
  }
  t.ok(j.setup.ramPrefill.ok, 'ram store prefilled');
  t.ok(existsSync(path.join(out, 'ok.md')) && existsSync(path.join(out, 'ok.svg')));
  t.match(readFileSync(path.join(out, 'ok.md'), 'utf8'), /test fake/);
  t.equal(j.setup.backendExits[0].exit.code, 0, 'ours-ram stopped cleanly');

  // Failed generator runs are marked and the matrix goes on; exit status 1.
  const f = spawnSync(process.execPath, [run, '--loadgen', fake, '--backends', 'ours-file', '--points', 'rr4k-qd32', '--placements', 'same',
    '--runs', '2', '--runtime', '0.5', '--ramp', '0', '--warmup', '0', '--out', out, '--label', 'fail'], {
    encoding: 'utf8', timeout: 100_000, env: { ...process.env, VST_FAKE_LOADGEN_FAIL: 'errors' },
  });
  t.equal(f.status, 1);
  t.match(f.stderr, /errors=3/);
  const jf = JSON.parse(readFileSync(path.join(out, 'fail.json'), 'utf8'));
  t.equal(jf.failures.length, 2, 'both runs failed and were recorded');
  t.equal(jf.summary[0].backends[0].failedRuns, 2);
  t.match(readFileSync(path.join(out, 'fail.md'), 'utf8'), /## Failed runs/);
});
