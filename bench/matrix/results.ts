// What one run of the matrix records (raw samples), and what it concludes from them (medians,
// ratios, the issue's targets).

import type { GcCounts } from './backend-process';
import type { GenResult } from './loadgen';
import { GROUPS, caseKey, type BackendId, type GroupId, type Mode, type Placement, type PointDef } from './plan';
import { ratio, spread, type Spread } from '../stats';

/** CPU accounting over the sampled window (strictly inside the generator's measured window). */
export interface WindowSample {
  seconds: number;
  backendCpuUs: number;
  generatorCpuUs: number | null;
  /** busy CPU of everything else on the box, in % of one vCPU */
  otherPct: number | null;
  /** CPU the hypervisor took from this VM, % of one vCPU */
  stealPct: number;
  /** I/Os in the window, estimated as the generator's IOPS × window length */
  ios: number;
}

export interface Sample {
  /** 1-based */
  run: number;
  /** position of this backend in the run's (rotated) order */
  slot: number;
  backend: BackendId;
  ok: boolean;
  failure?: string;
  command: string[];
  exitCode: number | null;
  exitSignal: string | null;
  timedOut: boolean;
  wallS: number;
  result?: GenResult;
  window?: WindowSample;
  cpuUsPerIo: number | null;
  generatorCpuUsPerIo: number | null;
  /** GC lines in the window (ours only) */
  gc?: GcCounts & { per100kScavenges: number | null };
  /** GC lines from the generator's spawn to its exit, ramp and connection set-up included (ours only) */
  gcLifetime?: GcCounts;
  disturbed: boolean;
  backendAffinity: string[];
  generatorStderr?: string;
}

export interface CaseResult {
  key: string;
  group: GroupId;
  point: PointDef;
  placement: Placement;
  mode: Mode;
  vqSize: number;
  backendCpu: number;
  generatorCpu: number;
  backends: BackendId[];
  samples: Sample[];
}

export interface BackendSummary {
  backend: BackendId;
  okRuns: number;
  failedRuns: number;
  disturbedRuns: number;
  iops: Spread | null;
  mbps: Spread | null;
  p50: Spread | null;
  p99: Spread | null;
  p999: Spread | null;
  cpuUsPerIo: Spread | null;
  generatorCpuUsPerIo: Spread | null;
  kicksPerIo: Spread | null;
  callsPerIo: Spread | null;
  scavPer100k: Spread | null;
  /** ours: GC lines summed over the ok runs' windows, and the windows' I/Os */
  gcTotal?: { scavenge: number; markCompact: number; minorMc: number; windowIos: number };
}

export interface PeerRatio {
  peer: BackendId;
  /** ours median IOPS / peer median IOPS (higher is better) */
  iops: number | null;
  /** ours median p50 / peer median p50 (lower is better) */
  p50: number | null;
}

export interface CaseSummary {
  key: string;
  group: GroupId;
  point: string;
  title: string;
  placement: Placement;
  mode: Mode;
  iodepth: number;
  queues: number;
  backends: BackendSummary[];
  ratios: PeerRatio[];
}

function summarizeBackend(c: CaseResult, b: BackendId): BackendSummary {
  const all = c.samples.filter((s) => s.backend === b);
  const ok = all.filter((s) => s.ok && s.result !== undefined);
  const r = (f: (s: Sample) => number | null | undefined): Spread | null => spread(ok.map(f));
  const out: BackendSummary = {
    backend: b,
    okRuns: ok.length,
    failedRuns: all.length - ok.length,
    disturbedRuns: all.filter((s) => s.disturbed).length,
    iops: r((s) => s.result!.iops),
    mbps: r((s) => s.result!.mbps),
    p50: r((s) => s.result!.lat_us.p50),
    p99: r((s) => s.result!.lat_us.p99),
    p999: r((s) => s.result!.lat_us.p999),
    cpuUsPerIo: r((s) => s.cpuUsPerIo),
    generatorCpuUsPerIo: r((s) => s.generatorCpuUsPerIo),
    kicksPerIo: r((s) => s.result!.kicks_per_io),
    callsPerIo: r((s) => s.result!.calls_per_io),
    scavPer100k: r((s) => s.gc?.per100kScavenges),
  };
  if (ok.some((s) => s.gc !== undefined)) {
    const t = { scavenge: 0, markCompact: 0, minorMc: 0, windowIos: 0 };
    for (const s of ok) {
      if (s.gc === undefined || s.window === undefined) continue;
      t.scavenge += s.gc.scavenge;
      t.markCompact += s.gc.markCompact;
      t.minorMc += s.gc.minorMc;
      t.windowIos += s.window.ios;
    }
    out.gcTotal = t;
  }
  return out;
}

export function summarizeCase(c: CaseResult): CaseSummary {
  const backends = c.backends.map((b) => summarizeBackend(c, b));
  const ours = backends.find((b) => b.backend === GROUPS[c.group].ours);
  const ratios: PeerRatio[] = [];
  for (const peer of GROUPS[c.group].peers) {
    const p = backends.find((b) => b.backend === peer);
    if (p === undefined) continue;
    ratios.push({ peer, iops: ratio(ours?.iops, p.iops), p50: ratio(ours?.p50, p.p50) });
  }
  return {
    key: c.key, group: c.group, point: c.point.id, title: c.point.title, placement: c.placement, mode: c.mode,
    iodepth: c.point.iodepth, queues: c.point.queues, backends, ratios,
  };
}

// ---------------------------------------------------------------------------------------------
// The issue's targets

export type TargetStatus = 'met' | 'not met' | 'n/a';

export interface TargetResult {
  id: string;
  /** what is compared, in words */
  text: string;
  /** e.g. "≥ 1.0×" */
  want: string;
  value: number | null;
  status: TargetStatus;
  /** the medians behind the value, or why there is none */
  detail: string;
}

function findBackend(cases: readonly CaseSummary[], key: string, b: BackendId): BackendSummary | undefined {
  return cases.find((c) => c.key === key)?.backends.find((x) => x.backend === b);
}

function fmtSpread(s: Spread | null | undefined, f: (v: number) => string): string {
  return s == null ? '—' : `${f(s.median)} [${f(s.min)}–${f(s.max)}]`;
}

const kIops = (v: number): string => `${(v / 1000).toFixed(v >= 100_000 ? 0 : 1)}k`;
const us = (v: number): string => `${v < 100 ? v.toFixed(1) : v.toFixed(0)} µs`;

function judge(value: number | null, op: '>=' | '<=' | '<', threshold: number): TargetStatus {
  if (value === null) return 'n/a';
  if (op === '>=') return value >= threshold ? 'met' : 'not met';
  if (op === '<=') return value <= threshold ? 'met' : 'not met';
  return value < threshold ? 'met' : 'not met';
}

function ratioTarget(cases: readonly CaseSummary[], id: string, text: string, key: string, ours: BackendId, peer: BackendId,
  metric: 'iops' | 'p50', op: '>=' | '<=', threshold: number, peerKey = key): TargetResult {
  const a = findBackend(cases, key, ours);
  const b = findBackend(cases, peerKey, peer);
  const want = `${op === '>=' ? '≥' : '≤'} ${threshold.toFixed(1)}×`;
  const value = ratio(a?.[metric], b?.[metric]);
  const f = metric === 'iops' ? kIops : us;
  const detail = a === undefined || b === undefined
    ? `not run (${a === undefined ? `${ours} ${key}` : `${peer} ${peerKey}`})`
    : `${ours} ${fmtSpread(a[metric], f)} vs ${peer} ${fmtSpread(b[metric], f)}`;
  return { id, text, want, value, status: judge(value, op, threshold), detail };
}

function gcTarget(cases: readonly CaseSummary[], ours: BackendId): TargetResult {
  let scav = 0;
  let ios = 0;
  let worst: { v: number; key: string } | null = null;
  for (const c of cases) {
    const b = c.backends.find((x) => x.backend === ours);
    if (b?.gcTotal === undefined) continue;
    scav += b.gcTotal.scavenge;
    ios += b.gcTotal.windowIos;
    if (b.gcTotal.windowIos > 0) {
      const v = (b.gcTotal.scavenge / b.gcTotal.windowIos) * 1e5;
      if (worst === null || v > worst.v) worst = { v, key: c.key };
    }
  }
  const value = ios > 0 ? (scav / ios) * 1e5 : null;
  const detail = value === null
    ? `no ${ours} runs`
    : `${scav} scavenges in ${Math.round(ios).toLocaleString('en-US')} I/Os over all ${ours} runs; worst case ${worst!.key} ${worst!.v.toFixed(2)}`;
  return { id: `gc-${ours}`, text: `${ours}: scavenges per 100K I/Os, all its runs`, want: '< 1', value, status: judge(value, '<', 1), detail };
}

/**
 * The issue's targets, evaluated in irq mode (the mode every point runs in); the rows marked
 * "generator polling" repeat them where a polling run exists, since the issue's qsd anchors
 * were measured that way.
 */
export function evaluateTargets(cases: readonly CaseSummary[]): TargetResult[] {
  const f = (p: string, pl: Placement, m: Mode): string => caseKey('file', p, pl, m);
  const r = (p: string): string => caseKey('ram', p, 'split', 'irq');
  return [
    ratioTarget(cases, 'rr4k-qd32-split', '4 KiB random read QD32, split: IOPS ours-file / qsd-native', f('rr4k-qd32', 'split', 'irq'), 'ours-file', 'qsd-native', 'iops', '>=', 1.0),
    ratioTarget(cases, 'rw4k-qd32-split', '4 KiB random write QD32, split: IOPS ours-file / qsd-native', f('rw4k-qd32', 'split', 'irq'), 'ours-file', 'qsd-native', 'iops', '>=', 1.0),
    ratioTarget(cases, 'rr4k-qd32-split-poll', '4 KiB random read QD32, split, generator polling: IOPS ours-file / qsd-native', f('rr4k-qd32', 'split', 'poll'), 'ours-file', 'qsd-native', 'iops', '>=', 1.0),
    ratioTarget(cases, 'rr4k-qd1-split-p50', '4 KiB random read QD1, split: p50 latency ours-file / qsd-native', f('rr4k-qd1', 'split', 'irq'), 'ours-file', 'qsd-native', 'p50', '<=', 1.0),
    ratioTarget(cases, 'rw4k-qd1-split-p50', '4 KiB random write QD1, split: p50 latency ours-file / qsd-native', f('rw4k-qd1', 'split', 'irq'), 'ours-file', 'qsd-native', 'p50', '<=', 1.0),
    ratioTarget(cases, 'rr4k-qd1-split-poll-p50', '4 KiB random read QD1, split, generator polling: p50 latency ours-file / qsd-native', f('rr4k-qd1', 'split', 'poll'), 'ours-file', 'qsd-native', 'p50', '<=', 1.0),
    ratioTarget(cases, 'rr4k-qd1-same-p50', '4 KiB random read QD1, same vCPU: p50 latency ours-file / qsd-native', f('rr4k-qd1', 'same', 'irq'), 'ours-file', 'qsd-native', 'p50', '<=', 1.1),
    ratioTarget(cases, 'rw4k-qd1-same-p50', '4 KiB random write QD1, same vCPU: p50 latency ours-file / qsd-native', f('rw4k-qd1', 'same', 'irq'), 'ours-file', 'qsd-native', 'p50', '<=', 1.1),
    ratioTarget(cases, 'sr128k-split', '128 KiB sequential read QD32, split: IOPS (= MB/s) ours-file / qsd-native', f('sr128k-qd32', 'split', 'irq'), 'ours-file', 'qsd-native', 'iops', '>=', 1.0),
    ratioTarget(cases, 'ram-rr4k-qd32', 'ram vs null: 4 KiB random read QD32, split: IOPS ours-ram / qsd-null', r('rr4k-qd32'), 'ours-ram', 'qsd-null', 'iops', '>=', 0.7),
    ratioTarget(cases, 'ram-rw4k-qd32', 'ram vs null: 4 KiB random write QD32, split: IOPS ours-ram / qsd-null', r('rw4k-qd32'), 'ours-ram', 'qsd-null', 'iops', '>=', 0.7),
    ratioTarget(cases, 'ram-sr128k-qd32', 'ram vs null: 128 KiB sequential read QD32, split: IOPS ours-ram / qsd-null', r('sr128k-qd32'), 'ours-ram', 'qsd-null', 'iops', '>=', 0.7),
    ratioTarget(cases, 'two-queues-split', '2 queues × QD32 vs 1 queue × QD32, 4 KiB random read, split: IOPS ours-file 2q / ours-file 1q',
      f('rr4k-qd32-2q', 'split', 'irq'), 'ours-file', 'ours-file', 'iops', '>=', 1.3, f('rr4k-qd32', 'split', 'irq')),
    gcTarget(cases, 'ours-file'),
    gcTarget(cases, 'ours-ram'),
  ];
}

/** Two-queue scaling of every backend (2q median / 1q median), per placement. */
export function queueScaling(cases: readonly CaseSummary[]): { placement: Placement; backend: BackendId; value: number | null }[] {
  const out: { placement: Placement; backend: BackendId; value: number | null }[] = [];
  for (const c2 of cases) {
    if (c2.group !== 'file' || c2.point !== 'rr4k-qd32-2q' || c2.mode !== 'irq') continue;
    const c1 = cases.find((c) => c.key === caseKey('file', 'rr4k-qd32', c2.placement, 'irq'));
    for (const b of c2.backends) {
      const one = c1?.backends.find((x) => x.backend === b.backend);
      out.push({ placement: c2.placement, backend: b.backend, value: ratio(b.iops, one?.iops) });
    }
  }
  return out;
}
