// `vhost-scsi-ts host list [--json]`: what this host sees of our LUNs through tcm_loop + TCMU
// (backend/tcmu/configfs.ts): which LUN, backstore, tcm_loop WWN and nexus, where the kernel put
// it (H:C:T:L, /dev/sdX) and which /dev/uioN carries its ring. Read-only: it opens no UIO device
// and changes nothing, so it is safe next to a running backend.

import { ConfigfsHost, HostExposureError, type ExposedDevice } from './tcmu/configfs';

const USAGE = `usage: vhost-scsi-ts host list [--json] [--configfs DIR] [--sysfs DIR] [--dev DIR]

Show the LUNs vhost-scsi-ts exposes on this host through the kernel's tcm_loop fabric and TCMU:
LUN, backstore, tcm_loop WWN and nexus, SCSI address, /dev/sdX, the UIO device of the ring and
the state (online; blocked: a restart is re-attaching it; unlinked: no LUN link; partial: a
crashed run's leftover, removed by the next start of its backend).

  --json            one JSON array, one object per exposure
  --configfs DIR    configfs mount point (default /sys/kernel/config)
  --sysfs DIR       sysfs mount point (default /sys)
  --dev DIR         device directory (default /dev)
`;

/** The machine-readable form of one exposure (`host list --json`). */
export interface HostListEntry {
  lun: number | null;
  backstore: string;
  backstoreDir: string;
  wwn: string | null;
  protocol: 'SAS' | 'FC' | 'iSCSI' | null;
  nexus: string | null;
  scsiAddress: string | null;
  blockDevice: string | null;
  uio: string | null;
  sizeBytes: number;
  blockSize: number;
  state: ExposedDevice['state'];
}

function protocolOf(wwn: string): HostListEntry['protocol'] {
  return wwn.startsWith('naa.') ? 'SAS' : wwn.startsWith('fc.') ? 'FC' : wwn.startsWith('iqn.') ? 'iSCSI' : null;
}

export function hostListEntry(d: ExposedDevice): HostListEntry {
  return {
    lun: d.spec.lun >= 0 ? d.spec.lun : null,
    backstore: d.spec.name,
    backstoreDir: d.backstoreDir,
    wwn: d.spec.wwn !== '' ? d.spec.wwn : null,
    protocol: d.spec.wwn !== '' ? protocolOf(d.spec.wwn) : null,
    nexus: d.spec.initiator !== '' ? d.spec.initiator : null,
    scsiAddress: d.scsiAddress,
    blockDevice: d.blockDevice !== null ? `/dev/${d.blockDevice}` : null,
    uio: d.uioPath !== '' ? d.uioPath : null,
    sizeBytes: d.spec.sizeBytes,
    blockSize: d.spec.blockSize,
    state: d.state,
  };
}

/** Columns padded to their widest cell; '-' for what is unknown. */
export function formatHostList(entries: readonly HostListEntry[]): string {
  if (entries.length === 0) return 'no LUNs of vhost-scsi-ts are exposed on this host\n';
  const header = ['LUN', 'BACKSTORE', 'WWN', 'NEXUS', 'ADDRESS', 'DEVICE', 'UIO', 'STATE'];
  const rows = entries.map((e) => [
    e.lun !== null ? String(e.lun) : '?', e.backstore, e.wwn ?? '-', e.nexus ?? '-', e.scsiAddress ?? '-',
    e.blockDevice ?? '-', e.uio ?? '-', e.state,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join('  ') + '\n';
  return line(header) + rows.map(line).join('');
}

/**
 * `vhost-scsi-ts host …` with the arguments after "host". Returns the exit status: 0 done,
 * 1 the kernel's LIO/TCMU/tcm_loop or configfs is missing (the message says which and how to
 * load it), 2 a usage error. Output goes to `out`, errors to `err` (default `out`).
 */
export function hostCommand(argv: string[], out: (s: string) => void, err: (s: string) => void = out): number {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '-h' || sub === '--help' || sub === 'help') {
    (sub === undefined ? err : out)(USAGE);
    return sub === undefined ? 2 : 0;
  }
  if (sub !== 'list') {
    err(`vhost-scsi-ts: unknown host command "${sub}" (try: vhost-scsi-ts host list)\n`);
    return 2;
  }
  let json = false;
  const dirs: { configfs?: string; sysfs?: string; dev?: string } = {};
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    const eq = a.startsWith('--') ? a.indexOf('=') : -1;
    const flag = eq > 0 ? a.slice(0, eq) : a;
    switch (flag) {
      case '--json': json = true; break;
      case '-h': case '--help': out(USAGE); return 0;
      case '--configfs': case '--sysfs': case '--dev': {
        const v = eq > 0 ? a.slice(eq + 1) : rest[++i];
        if (v === undefined || v === '') {
          err(`vhost-scsi-ts: ${flag} needs a directory\n`);
          return 2;
        }
        dirs[flag.slice(2) as 'configfs' | 'sysfs' | 'dev'] = v;
        break;
      }
      default:
        err(`vhost-scsi-ts: unknown argument "${a}" for host list (see vhost-scsi-ts host --help)\n`);
        return 2;
    }
  }
  const host = new ConfigfsHost(dirs);
  let entries: HostListEntry[];
  try {
    host.checkAvailable();
    entries = host.list().map(hostListEntry);
  } catch (e) {
    if (e instanceof HostExposureError) {
      err(`vhost-scsi-ts: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
  out(json ? JSON.stringify(entries, null, 2) + '\n' : formatHostList(entries));
  return 0;
}
