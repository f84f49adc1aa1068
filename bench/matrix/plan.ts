// What the matrix runs: the points (I/O patterns), the backends, the comparisons they belong to,
// and the cases (point × placement × generator mode × comparison) in execution order.
//
// Two comparisons share one run:
//   file  ours-file (virtio-scsi, our file backstore) against qemu-storage-daemon's vhost-user-blk
//         export of the same tmpfs image, best tuned (aio=native, cache.direct=on) and default
//         (aio=threads, page cache);
//   ram   ours-ram (our RAM backstore) against qsd's null-co driver: the cost of the two data
//         paths with no file system below them.

export type Placement = 'split' | 'same';
export type Mode = 'irq' | 'poll';
export type BackendId = 'ours-file' | 'ours-ram' | 'qsd-native' | 'qsd-threads' | 'qsd-null';
export type GroupId = 'file' | 'ram';
export type Rw = 'randread' | 'randwrite' | 'read' | 'write';

export const PLACEMENTS: readonly Placement[] = ['split', 'same'];
export const MODES: readonly Mode[] = ['irq', 'poll'];

/** vCPU of the backend and of the generator in each placement (performance.md, "Harness rules"). */
export const PLACEMENT_CPUS: Readonly<Record<Placement, { backend: number; generator: number }>> = {
  split: { backend: 0, generator: 1 },
  same: { backend: 0, generator: 0 },
};

export const PLACEMENT_LEGEND: Readonly<Record<Placement, string>> = {
  split: 'backend (all its threads) on vCPU 0, load generator on vCPU 1',
  same: 'backend (all its threads) and load generator both on vCPU 0',
};

export interface PointDef {
  readonly id: string;
  readonly title: string;
  readonly rw: Rw;
  /** bytes per request */
  readonly bs: number;
  /** requests in flight per queue */
  readonly iodepth: number;
  readonly queues: number;
}

const KiB = 1024;
const MiB = 1024 * 1024;

/**
 * The points. Sequential 128 KiB runs at QD32, the depth of the qsd anchor in
 * performance.md §1.2 A (7.6 GB/s); 1 MiB at QD8 as in bench/host-exposure. The 2-queue point
 * keeps QD32 per queue, so against rr4k-qd32 it shows what a second queue adds.
 */
export const POINTS: readonly PointDef[] = [
  { id: 'rr4k-qd1', title: '4 KiB random read, QD1', rw: 'randread', bs: 4 * KiB, iodepth: 1, queues: 1 },
  { id: 'rw4k-qd1', title: '4 KiB random write, QD1', rw: 'randwrite', bs: 4 * KiB, iodepth: 1, queues: 1 },
  { id: 'rr4k-qd32', title: '4 KiB random read, QD32', rw: 'randread', bs: 4 * KiB, iodepth: 32, queues: 1 },
  { id: 'rw4k-qd32', title: '4 KiB random write, QD32', rw: 'randwrite', bs: 4 * KiB, iodepth: 32, queues: 1 },
  { id: 'rr4k-qd128', title: '4 KiB random read, QD128', rw: 'randread', bs: 4 * KiB, iodepth: 128, queues: 1 },
  { id: 'rw4k-qd128', title: '4 KiB random write, QD128', rw: 'randwrite', bs: 4 * KiB, iodepth: 128, queues: 1 },
  { id: 'sr128k-qd32', title: '128 KiB sequential read, QD32', rw: 'read', bs: 128 * KiB, iodepth: 32, queues: 1 },
  { id: 'sr1m-qd8', title: '1 MiB sequential read, QD8', rw: 'read', bs: MiB, iodepth: 8, queues: 1 },
  { id: 'rr4k-qd32-2q', title: '4 KiB random read, 2 queues × QD32', rw: 'randread', bs: 4 * KiB, iodepth: 32, queues: 2 },
];

export function pointById(id: string): PointDef | undefined {
  return POINTS.find((p) => p.id === id);
}

/** Points that also run with a busy-polling generator (split placement only): the qsd anchors were taken that way. */
export const POLL_POINTS: readonly string[] = ['rr4k-qd1', 'rr4k-qd32'];
/** Points of the ram comparison (split placement, irq). */
export const RAM_POINTS: readonly string[] = ['rr4k-qd32', 'rw4k-qd32', 'sr128k-qd32'];

export interface BackendDef {
  readonly id: BackendId;
  readonly group: GroupId;
  readonly ours: boolean;
  /** what the generator speaks to it */
  readonly proto: 'scsi' | 'blk';
  readonly title: string;
}

export const BACKENDS: Readonly<Record<BackendId, BackendDef>> = {
  'ours-file': { id: 'ours-file', group: 'file', ours: true, proto: 'scsi', title: 'vhost-scsi-ts, file backstore on the tmpfs image' },
  'qsd-native': { id: 'qsd-native', group: 'file', ours: false, proto: 'blk', title: 'qemu-storage-daemon vhost-user-blk, file aio=native cache.direct=on (best tuned)' },
  'qsd-threads': { id: 'qsd-threads', group: 'file', ours: false, proto: 'blk', title: 'qemu-storage-daemon vhost-user-blk, file with defaults (aio=threads, page cache)' },
  'ours-ram': { id: 'ours-ram', group: 'ram', ours: true, proto: 'scsi', title: 'vhost-scsi-ts, ram backstore (1 GiB, prefilled)' },
  'qsd-null': { id: 'qsd-null', group: 'ram', ours: false, proto: 'blk', title: 'qemu-storage-daemon vhost-user-blk, null-co read-zeroes=on' },
};

export const BACKEND_IDS = Object.keys(BACKENDS) as BackendId[];
export const QSD_BACKENDS: readonly BackendId[] = ['qsd-native', 'qsd-threads', 'qsd-null'];

export interface GroupDef {
  readonly id: GroupId;
  readonly ours: BackendId;
  readonly peers: readonly BackendId[];
}

export const GROUPS: Readonly<Record<GroupId, GroupDef>> = {
  file: { id: 'file', ours: 'ours-file', peers: ['qsd-native', 'qsd-threads'] },
  ram: { id: 'ram', ours: 'ours-ram', peers: ['qsd-null'] },
};

export interface Case {
  /** `group/point/placement/mode`, unique */
  readonly key: string;
  readonly group: GroupId;
  readonly point: PointDef;
  readonly placement: Placement;
  readonly mode: Mode;
  /** the backends of this comparison that run (ours first) */
  readonly backends: readonly BackendId[];
}

export interface PlanFilter {
  points: readonly string[];
  placements: readonly Placement[];
  modes: readonly Mode[];
  backends: readonly BackendId[];
}

export function caseKey(group: GroupId, point: string, placement: Placement, mode: Mode): string {
  return `${group}/${point}/${placement}/${mode}`;
}

/**
 * The cases in execution order: each point in POINTS order, its file cases (split then same,
 * irq then poll) followed by its ram case, so that the comparisons of one point run close in time.
 * A case keeps only the selected backends and is dropped when none is left.
 */
export function buildPlan(f: PlanFilter): Case[] {
  const out: Case[] = [];
  const add = (group: GroupId, point: PointDef, placement: Placement, mode: Mode): void => {
    if (!f.placements.includes(placement) || !f.modes.includes(mode)) return;
    const g = GROUPS[group];
    const backends = [g.ours, ...g.peers].filter((b) => f.backends.includes(b));
    if (backends.length === 0) return;
    out.push({ key: caseKey(group, point.id, placement, mode), group, point, placement, mode, backends });
  };
  for (const point of POINTS) {
    if (!f.points.includes(point.id)) continue;
    for (const placement of PLACEMENTS) {
      add('file', point, placement, 'irq');
      if (placement === 'split' && POLL_POINTS.includes(point.id)) add('file', point, placement, 'poll');
    }
    if (RAM_POINTS.includes(point.id)) add('ram', point, 'split', 'irq');
  }
  return out;
}

/**
 * Virtqueue size for a point. 256 entries (the size performance.md's anchors used) unless the
 * point cannot fit: the generator lays a request out as Linux does with direct descriptors
 * (header, data, response: 3 descriptors, virtio 1.2 §5.6.6 / §5.2.6), so a queue of N entries
 * holds N/3 requests and QD128 needs 512.
 */
export function vqSizeFor(p: PointDef): number {
  let n = 256;
  while (n < p.iodepth * 3) n *= 2;
  return n;
}

/** The generator's --bs syntax: k/m suffixes. */
export function bsArg(bs: number): string {
  if (bs % MiB === 0) return `${bs / MiB}m`;
  if (bs % KiB === 0) return `${bs / KiB}k`;
  return String(bs);
}

export function bsLabel(bs: number): string {
  if (bs % MiB === 0) return `${bs / MiB} MiB`;
  if (bs % KiB === 0) return `${bs / KiB} KiB`;
  return `${bs} B`;
}
