// The printed table and the markdown summary.

import { BACKENDS, GROUPS, PLACEMENT_CPUS, PLACEMENT_LEGEND, PLACEMENTS, type BackendId } from './plan';
import { queueScaling, type BackendSummary, type CaseSummary, type TargetResult } from './results';
import type { Spread } from '../stats';

/** 3 significant digits with k/M: 215k, 21.5k, 1.23M, 950. */
export function fmtCount(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e6) return `${Number((v / 1e6).toPrecision(3))}M`;
  if (a >= 1e3) return `${Number((v / 1e3).toPrecision(3))}k`;
  return String(Number(v.toPrecision(3)));
}

export function fmtUs(v: number): string {
  return v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0);
}

function fmtFixed(d: number): (v: number) => string {
  return (v) => v.toFixed(d);
}

function med(s: Spread | null | undefined, f: (v: number) => string): string {
  return s == null ? '—' : f(s.median);
}

function range(s: Spread | null | undefined, f: (v: number) => string): string {
  return s == null ? '—' : `${f(s.median)} [${f(s.min)}–${f(s.max)}]`;
}

/** Two decimals, three when two would round a miss onto the threshold. */
export function fmtRatio(v: number | null, threshold?: number): string {
  if (v === null) return '—';
  const near = threshold !== undefined && Math.abs(v - threshold) < 0.005 && v !== threshold;
  return `${v.toFixed(near ? 3 : 2)}×`;
}

function runsCell(b: BackendSummary): string {
  let s = `${b.okRuns}/${b.okRuns + b.failedRuns}`;
  if (b.disturbedRuns > 0) s += ` ${b.disturbedRuns}d`;
  return s;
}

const DETAIL_HEAD = ['point', 'placement', 'mode', 'backend', 'IOPS median [min–max]', 'MB/s', 'p50 µs', 'p99 µs', 'p99.9 µs',
  'CPU µs/IO', 'gen µs/IO', 'kicks/IO', 'calls/IO', 'scav/100K', 'MC', 'ours/this IOPS', 'ours/this p50', 'runs'];

/** One row per case and backend, all metrics as medians (IOPS with its range); ratios on the peer rows. */
export function detailRows(cases: readonly CaseSummary[]): string[][] {
  const rows: string[][] = [];
  for (const c of cases) {
    for (const b of c.backends) {
      const r = c.ratios.find((x) => x.peer === b.backend);
      const qd1 = c.iodepth === 1;
      rows.push([
        c.group === 'ram' ? `${c.point} (ram)` : c.point, c.placement, c.mode, b.backend,
        range(b.iops, fmtCount), med(b.mbps, (v) => v.toFixed(v < 100 ? 1 : 0)),
        med(b.p50, fmtUs), med(b.p99, fmtUs), med(b.p999, fmtUs),
        med(b.cpuUsPerIo, fmtUs), med(b.generatorCpuUsPerIo, fmtUs),
        med(b.kicksPerIo, fmtFixed(3)), med(b.callsPerIo, fmtFixed(3)),
        BACKENDS[b.backend].ours ? med(b.scavPer100k, fmtFixed(2)) : '',
        BACKENDS[b.backend].ours && b.gcTotal !== undefined ? String(b.gcTotal.markCompact) : '',
        r === undefined ? '' : fmtRatio(r.iops),
        r === undefined || !qd1 ? '' : fmtRatio(r.p50),
        runsCell(b),
      ]);
    }
  }
  return rows;
}

/** Columns from `rightFrom` on are right-aligned (numbers), unless listed in `left`. */
function textTable(head: string[], rows: string[][], rightFrom: number, left: readonly number[] = [], sepBefore?: (i: number) => boolean): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const right = (i: number): boolean => i >= rightFrom && !left.includes(i);
  const line = (r: string[]): string => r.map((c, i) => (right(i) ? c.padStart(w[i]) : c.padEnd(w[i]))).join('  ').trimEnd();
  const out = [line(head), w.map((n) => '-'.repeat(n)).join('  ')];
  rows.forEach((r, i) => {
    if (i > 0 && sepBefore?.(i)) out.push('');
    out.push(line(r));
  });
  return out.join('\n');
}

function mdEscape(s: string): string {
  return s.replace(/\|/g, '\\|');
}

function mdTable(head: string[], rows: string[][], rightFrom = 1): string {
  const out = [`| ${head.map(mdEscape).join(' | ')} |`, `|${head.map((_, i) => (i >= rightFrom ? '---:' : '---')).join('|')}|`];
  for (const r of rows) out.push(`| ${r.map(mdEscape).join(' | ')} |`);
  return out.join('\n');
}

function targetRows(targets: readonly TargetResult[]): string[][] {
  return targets.map((t) => {
    const th = Number(/[\d.]+/.exec(t.want)?.[0]);
    const value = t.value === null ? '—' : t.id.startsWith('gc-') ? t.value.toFixed(2) : fmtRatio(t.value, th);
    return [t.text, t.want, value, t.status, t.detail];
  });
}

/** Ours and each peer, median IOPS side by side, with the ratios. */
function ratioRows(cases: readonly CaseSummary[], group: 'file' | 'ram'): { head: string[]; rows: string[][] } {
  const g = GROUPS[group];
  const head = ['point', 'placement', 'mode', `${g.ours} IOPS`, ...g.peers.map((p) => `${p} IOPS`), ...g.peers.map((p) => `ours/${p}`)];
  if (group === 'file') head.push('p50 ours/qsd-native (QD1)');
  const rows: string[][] = [];
  for (const c of cases) {
    if (c.group !== group) continue;
    const get = (b: BackendId): BackendSummary | undefined => c.backends.find((x) => x.backend === b);
    const row = [c.point, c.placement, c.mode, med(get(g.ours)?.iops, fmtCount), ...g.peers.map((p) => med(get(p)?.iops, fmtCount)),
      ...g.peers.map((p) => fmtRatio(c.ratios.find((r) => r.peer === p)?.iops ?? null))];
    if (group === 'file') {
      const r = c.ratios.find((x) => x.peer === 'qsd-native');
      row.push(c.iodepth === 1 ? fmtRatio(r?.p50 ?? null) : '');
    }
    rows.push(row);
  }
  return { head, rows };
}

export interface ReportContext {
  label: string;
  command: string;
  startedAt: string;
  runs: number;
  runtimeS: number;
  rampS: number;
  cpuProf: boolean;
  aborted: string | null;
  machine: Record<string, unknown>;
  backendCommands: Partial<Record<BackendId, string>>;
  notes: string[];
  failures: string[];
}

export function printedReport(cases: readonly CaseSummary[], targets: readonly TargetResult[], ctx: ReportContext): string {
  const out: string[] = [];
  const rows = detailRows(cases);
  let n = 0;
  const firstRowOfCase = new Set<number>();
  for (const c of cases) {
    firstRowOfCase.add(n);
    n += c.backends.length;
  }
  out.push(textTable(DETAIL_HEAD, rows, 4, [], (i) => firstRowOfCase.has(i)));
  out.push('');
  out.push(`Medians of ${ctx.runs} interleaved run${ctx.runs === 1 ? '' : 's'} of ${ctx.runtimeS} s (after ${ctx.rampS} s ramp); ratios are ours/peer medians.`);
  out.push(`Placement: ${PLACEMENTS.map((p) => `${p} = ${PLACEMENT_LEGEND[p]}`).join('; ')}.`);
  out.push('runs: ok/total, "d" = disturbed (other load > 10 % or steal > 15 % of a vCPU during the window).');
  out.push('');
  out.push('Targets:');
  out.push(textTable(['target', 'want', 'value', 'status', 'medians [min–max]'], targetRows(targets), 2, [3, 4]));
  const scaling = queueScaling(cases);
  if (scaling.length > 0) {
    out.push('');
    out.push(`Two queues / one queue (rr4k QD32 per queue, irq): ${scaling.map((s) => `${s.backend} ${s.placement} ${fmtRatio(s.value)}`).join(', ')}`);
  }
  if (ctx.cpuProf) out.push('\nDIAGNOSTIC RUN (--cpu-prof): our backends ran under the profiler; the numbers are not comparable.');
  for (const note of ctx.notes) out.push(`note: ${note}`);
  if (ctx.failures.length > 0) out.push(`\n${ctx.failures.length} failed run(s):\n${ctx.failures.map((f) => `  ${f}`).join('\n')}`);
  if (ctx.aborted !== null) out.push(`\nABORTED: ${ctx.aborted}`);
  return out.join('\n');
}

export function markdownReport(cases: readonly CaseSummary[], targets: readonly TargetResult[], ctx: ReportContext): string {
  const m = ctx.machine;
  const out: string[] = [];
  out.push(`# Load-generator matrix: vhost-scsi-ts vs qemu-storage-daemon (${ctx.label})`);
  out.push('');
  if (ctx.cpuProf) out.push('> **Diagnostic run (`--cpu-prof`)**: our backends ran under the V8 profiler; do not compare these numbers.\n');
  if (ctx.aborted !== null) out.push(`> **Aborted**: ${ctx.aborted}. The tables hold what ran before.\n`);
  out.push(`Started ${ctx.startedAt}; ${ctx.runs} interleaved run${ctx.runs === 1 ? '' : 's'} per point and backend, ${ctx.runtimeS} s measured after ${ctx.rampS} s ramp each.`);
  out.push(`Medians with [min–max]; every ratio is ours median / peer median.`);
  const all = cases.flatMap((c) => c.backends);
  const runs = all.reduce((a, b) => a + b.okRuns + b.failedRuns, 0);
  const disturbed = all.reduce((a, b) => a + b.disturbedRuns, 0);
  const failed = all.reduce((a, b) => a + b.failedRuns, 0);
  out.push(`${runs} generator runs: ${failed} failed, ${disturbed} disturbed (other load > 10 % or steal > 15 % of a vCPU during the run${disturbed > 0 ? '; re-run on a quiet machine before trusting these' : ''}).`);
  out.push('');
  out.push('```');
  out.push(ctx.command);
  out.push('```');
  out.push('');
  out.push(`Machine: ${String(m.cpuModel)}, ${String(m.nproc)} vCPUs, Linux ${String(m.kernel)}, node ${String(m.node)}, ${String(m.qsdVersion)}, commit ${String(m.gitCommit)}${m.gitDirty ? ' (uncommitted changes)' : ''}.`);
  out.push('');
  out.push('## Targets');
  out.push('');
  out.push(mdTable(['target', 'want', 'value', 'status', 'medians [min–max]'], targetRows(targets), 99));
  out.push('');
  out.push('Targets are read in irq mode (the generator sleeps on the call eventfd); the "generator polling" rows repeat them with a busy-polling generator, the way the issue\'s qsd anchors were measured.');
  out.push('');
  out.push('## Ratios: file image (ours-file vs qemu-storage-daemon)');
  out.push('');
  const fr = ratioRows(cases, 'file');
  out.push(fr.rows.length > 0 ? mdTable(fr.head, fr.rows, 3) : '(not run)');
  out.push('');
  out.push('## Ratios: ours-ram vs qsd null-co');
  out.push('');
  const rr = ratioRows(cases, 'ram');
  out.push(rr.rows.length > 0 ? mdTable(rr.head, rr.rows, 3) : '(not run)');
  const scaling = queueScaling(cases);
  if (scaling.length > 0) {
    out.push('');
    out.push('## Two queues');
    out.push('');
    out.push(mdTable(['backend', 'placement', '2 × QD32 / 1 × QD32 IOPS'], scaling.map((s) => [s.backend, s.placement, fmtRatio(s.value)]), 2));
  }
  out.push('');
  out.push('## All numbers');
  out.push('');
  out.push(mdTable(DETAIL_HEAD, detailRows(cases), 4));
  out.push('');
  out.push('Columns: latency from submission to completion seen by the generator. **CPU µs/IO**: the backend process\'s utime+stime');
  out.push('(all threads, /proc/PID/stat) over a window strictly inside the measured interval, divided by the I/Os in it; **gen µs/IO** the');
  out.push('same for the generator. **kicks/IO**, **calls/IO**: eventfd writes by the generator and call-eventfd signals it read (0 when it');
  out.push('polls). **scav/100K**: V8 scavenges (node --trace-gc) in the window per 100 000 I/Os; **MC**: mark-compact GCs in the');
  out.push('windows of all runs together. **runs**: ok/total, `d` = disturbed');
  out.push('(other processes > 10 % or steal > 15 % of a vCPU during the window).');
  out.push('');
  out.push('## Setup');
  out.push('');
  out.push('Placement (taskset; the backend\'s threads are re-pinned with `taskset -a -p` before every run):');
  out.push('');
  for (const p of PLACEMENTS) out.push(`- \`${p}\`: ${PLACEMENT_LEGEND[p]} (backend ${PLACEMENT_CPUS[p].backend}, generator ${PLACEMENT_CPUS[p].generator})`);
  out.push('');
  out.push('Backends (started once, kept running through the run):');
  out.push('');
  for (const [id, cmd] of Object.entries(ctx.backendCommands)) {
    out.push(`- \`${id}\`: ${BACKENDS[id as BackendId].title}`);
    out.push(`  \`${cmd}\``);
  }
  out.push('');
  out.push('Kept equal: one generator binary speaks virtio-scsi to ours and virtio-blk to qsd with the same ring size, EVENT_IDX on,');
  out.push('the same seed per run (the same offsets), the same 1 GiB image (fully written once, shared by the file backends) or a 1 GiB');
  out.push('in-memory store; each backend has 2 request queues configured. null-co runs with `read-zeroes=on` so its reads fill the');
  out.push('guest buffer as ours-ram\'s copy does (with the default, off, qsd would return reads without touching the data at all);');
  out.push('ours-ram is written end to end before the run, so its reads copy real data. Run order rotates between runs.');
  for (const note of ctx.notes) out.push(`\nNote: ${note}`);
  if (ctx.failures.length > 0) {
    out.push('');
    out.push('## Failed runs');
    out.push('');
    for (const f of ctx.failures) out.push(`- ${f}`);
  }
  out.push('');
  return out.join('\n');
}
