// virtio-scsi event queue (virtio 1.2 §5.6.6.3): the driver posts empty buffers; the device keeps
// them until it has an event. An event with no buffer available sets VIRTIO_SCSI_T_EVENTS_MISSED
// on the next one delivered, so the driver knows to rescan.

import { sgWrite, type DescriptorChain } from '../../virtqueue';
import type { ChainHandler, Vring } from '../vring';
import type { Logger } from '../log';
import { encodeEventLunField } from './lun-address';
import { EVENT_SIZE, VIRTIO_SCSI_T_EVENTS_MISSED, type EventType } from './spec';

export class EventQueue implements ChainHandler {
  private vring: Vring | null = null;
  private readonly held: DescriptorChain[] = [];
  private readonly event = new Uint8Array(EVENT_SIZE);
  private readonly eventView = new DataView(this.event.buffer);

  /** Shared with the device so a miss survives queue restarts. */
  constructor(private readonly state: { missed: boolean }, private readonly log: Logger) {}

  attach(vring: Vring): void { this.vring = vring; }

  handle(chain: DescriptorChain): void {
    if (chain.writableLength < EVENT_SIZE) {
      // A buffer that cannot hold an event is returned unused rather than kept for ever.
      this.log.rateLimited('short-event', 'warn', `event buffer of ${chain.writableLength} bytes returned unused`);
      this.vring!.complete(chain, 0);
      return;
    }
    this.held.push(chain);
  }

  releaseHeld(): number {
    const n = this.held.length;
    this.held.length = 0;
    return n;
  }

  heldCount(): number { return this.held.length; }

  /** Deliver an event; returns false when no buffer was available (recorded as missed). */
  post(event: EventType, lun: number, reason: number): boolean {
    const vring = this.vring;
    const chain = this.held.shift();
    if (!vring || !vring.live || !chain) {
      if (chain) this.held.unshift(chain);
      this.state.missed = true;
      return false;
    }
    const e = this.event;
    const flags = this.state.missed ? VIRTIO_SCSI_T_EVENTS_MISSED : 0;
    this.eventView.setUint32(0, (event | flags) >>> 0, true);
    encodeEventLunField(lun, e, 4);
    this.eventView.setUint32(12, reason >>> 0, true);
    sgWrite(chain.writable, 0, e);
    this.state.missed = false;
    vring.complete(chain, EVENT_SIZE);
    return true;
  }
}
