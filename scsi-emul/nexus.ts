// I_T nexus identity: the (initiator port, relative target port) pairs a target has seen.
import type { ITNexus } from './command';

/** One known I_T nexus. Identity is by value; fabrics may pass fresh ITNexus objects. */
export class NexusRecord {
  /** SPC-4 PROTOCOL IDENTIFIER of the target port, or -1 when the transport has none (virtio) */
  readonly protocolId: number;
  /** SCSI name string of the target port, or '' */
  readonly targetPortName: string;
  /** target port group (VPD 83h type 5h); the ALUA configuration may change it */
  targetPortGroup: number;

  constructor(readonly initiatorPort: string, readonly targetPortId: number, port?: ITNexus) {
    this.protocolId = port?.protocolId ?? -1;
    this.targetPortName = port?.targetPortName ?? '';
    this.targetPortGroup = port?.targetPortGroup ?? 1;
  }
}

/** SCSI name strings are UTF-8, at most 255 bytes with the terminator (SPC-4 §7.8.6.11); we accept printable ASCII. */
const SCSI_NAME = /^[\x21-\x7e]{1,251}$/;

export function validNexus(n: ITNexus | null | undefined): boolean {
  return n !== null && typeof n === 'object' && typeof n.initiatorPort === 'string' &&
    Number.isInteger(n.targetPortId) && n.targetPortId >= 1 && n.targetPortId <= 0xffff &&
    (n.protocolId === undefined || (Number.isInteger(n.protocolId) && n.protocolId >= 0 && n.protocolId <= 0x0f)) &&
    (n.targetPortName === undefined || (typeof n.targetPortName === 'string' && SCSI_NAME.test(n.targetPortName))) &&
    (n.targetPortGroup === undefined || (Number.isInteger(n.targetPortGroup) && n.targetPortGroup >= 0 && n.targetPortGroup <= 0xffff));
}

export class NexusRegistry {
  private readonly byPort = new Map<string, Map<number, NexusRecord>>();
  /** fast path: fabrics reuse one ITNexus object per session, so most lookups hit here */
  private readonly byObject = new WeakMap<ITNexus, NexusRecord>();
  private readonly all: NexusRecord[] = [];

  /** The record of an ITNexus object this registry has already looked up or added, else null. */
  known(n: ITNexus): NexusRecord | null {
    return this.byObject.get(n) ?? null;
  }

  /** The record for `n`, or null if this nexus was never seen. `n` must be valid. */
  find(n: ITNexus): NexusRecord | null {
    const hit = this.byObject.get(n);
    if (hit !== undefined) return hit;
    const rec = this.byPort.get(n.initiatorPort)?.get(n.targetPortId) ?? null;
    if (rec !== null) this.byObject.set(n, rec);
    return rec;
  }

  /** Creates the record for a nexus not seen before. */
  add(n: ITNexus): NexusRecord {
    const rec = new NexusRecord(n.initiatorPort, n.targetPortId, n);
    let ports = this.byPort.get(n.initiatorPort);
    if (ports === undefined) {
      ports = new Map();
      this.byPort.set(n.initiatorPort, ports);
    }
    ports.set(n.targetPortId, rec);
    this.byObject.set(n, rec);
    this.all.push(rec);
    return rec;
  }

  records(): readonly NexusRecord[] {
    return this.all;
  }
}
