// I_T nexus identity: the (initiator port, relative target port) pairs a target has seen.
import type { ITNexus } from './command';

/** One known I_T nexus. Identity is by value; fabrics may pass fresh ITNexus objects. */
export class NexusRecord {
  constructor(readonly initiatorPort: string, readonly targetPortId: number) {}
}

export function validNexus(n: ITNexus | null | undefined): boolean {
  return n !== null && typeof n === 'object' && typeof n.initiatorPort === 'string' &&
    Number.isInteger(n.targetPortId) && n.targetPortId >= 1 && n.targetPortId <= 0xffff;
}

export class NexusRegistry {
  private readonly byPort = new Map<string, Map<number, NexusRecord>>();
  /** fast path: fabrics reuse one ITNexus object per session, so most lookups hit here */
  private readonly byObject = new WeakMap<ITNexus, NexusRecord>();
  private readonly all: NexusRecord[] = [];

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
    const rec = new NexusRecord(n.initiatorPort, n.targetPortId);
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
