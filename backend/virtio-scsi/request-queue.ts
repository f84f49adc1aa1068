// virtio-scsi request queues (virtio 1.2 §5.6.6.1): decode virtio_scsi_req_cmd from the readable
// prefix of a chain, hand a ScsiCommand to the target core with data-out / data-in segment lists
// that point straight into guest memory, and encode virtio_scsi_resp_cmd when it completes.

import { hasFeature, sgRead, sgSlice, sgWrite, type DescriptorChain } from '../../virtqueue';
import { ScsiCommand, ServiceResponse, TaskAttribute, type ITNexus, type ScsiTarget } from '../../scsi-emul';
import type { ChainHandler, Vring } from '../vring';
import type { Logger } from '../log';
import { decodeLunField } from './lun-address';
import { CmdReq, CmdResp, VirtioScsiFeature, VirtioScsiResponse, VirtioScsiTaskAttr } from './spec';

/** Empty an array keeping its backing store (`length = 0` trims it, and the next push reallocates). */
function clear(a: Uint8Array[]): void {
  while (a.length > 0) a.pop();
}

/** One preallocated slot per descriptor head: a request never allocates a command. */
class RequestSlot {
  readonly cmd = new ScsiCommand();
  chain: DescriptorChain | null = null;
  constructor(readonly queue: RequestQueue) {
    this.cmd.onComplete = () => queue.finish(this);
  }
}

export interface RequestQueueOptions {
  target: ScsiTarget;
  nexus: ITNexus;
  cdbSize: number;
  senseSize: number;
  log: Logger;
}

export class RequestQueue implements ChainHandler {
  private vring: Vring | null = null;
  private readonly slots: RequestSlot[];
  private readonly header: Uint8Array;
  private readonly headerView: DataView;
  private readonly response: Uint8Array;
  private readonly responseView: DataView;
  private readonly cdbOffset: number;
  private readonly inout: boolean;
  private readonly requestHeaderSize: number;
  private readonly responseHeaderSize: number;
  /** The CDB bytes of `header`, a fixed view so decoding creates none. */
  private readonly cdbView: Uint8Array;

  constructor(size: number, features: bigint, private readonly opts: RequestQueueOptions) {
    this.cdbOffset = hasFeature(features, VirtioScsiFeature.T10_PI) ? CmdReq.cdbWithPi : CmdReq.cdb;
    this.inout = hasFeature(features, VirtioScsiFeature.INOUT);
    this.requestHeaderSize = this.cdbOffset + opts.cdbSize;
    this.responseHeaderSize = CmdResp.sense + opts.senseSize;
    this.header = new Uint8Array(this.requestHeaderSize);
    this.headerView = new DataView(this.header.buffer);
    this.cdbView = this.header.subarray(this.cdbOffset, this.cdbOffset + opts.cdbSize);
    this.response = new Uint8Array(this.responseHeaderSize);
    this.responseView = new DataView(this.response.buffer);
    this.slots = Array.from({ length: size }, () => new RequestSlot(this));
  }

  attach(vring: Vring): void {
    this.vring = vring;
  }

  releaseHeld(): number { return 0; }
  heldCount(): number { return 0; }

  handle(chain: DescriptorChain): void {
    const slot = this.slots[chain.head]; // head < queue size: checked by SplitQueue.pop
    // V6.2: without room for the response header nothing can be reported: the driver is broken.
    if (chain.writableLength < this.responseHeaderSize) {
      this.vring!.fail(`request ${chain.head}: ${chain.writableLength} writable bytes, the response needs ${this.responseHeaderSize}`);
      return;
    }
    slot.chain = chain;
    const cmd = slot.cmd;
    cmd.reset();
    // V6.1 / V9.1: gather the header into private memory whatever the descriptor layout; decide only on the copy.
    if (sgRead(chain.readable, 0, this.header) < this.requestHeaderSize) {
      this.opts.log.rateLimited('short-req', 'warn', `request ${chain.head}: ${chain.readableLength} readable bytes, header needs ${this.requestHeaderSize}`);
      this.answer(slot, VirtioScsiResponse.FAILURE);
      return;
    }
    const lun = decodeLunField(this.header, CmdReq.lun);
    if (lun < 0) {
      this.answer(slot, VirtioScsiResponse.BAD_TARGET);
      return;
    }
    const dataOutLength = chain.readableLength - this.requestHeaderSize;
    const dataInLength = chain.writableLength - this.responseHeaderSize;
    // V6.5: bidirectional commands need VIRTIO_SCSI_F_INOUT (never offered by QEMU to the guest).
    if (dataOutLength > 0 && dataInLength > 0 && !this.inout) {
      this.answer(slot, VirtioScsiResponse.FAILURE);
      return;
    }
    const attr = this.header[CmdReq.task_attr]; // guest-controlled: only the four virtio values are accepted
    if (attr > VirtioScsiTaskAttr.ACA) {
      this.answer(slot, VirtioScsiResponse.FAILURE);
      return;
    }
    cmd.nexus = this.opts.nexus;
    cmd.lun = lun;
    cmd.setTag(this.headerView.getUint32(CmdReq.id, true), this.headerView.getUint32(CmdReq.id + 4, true));
    cmd.taskAttribute = attr as number as TaskAttribute; // VirtioScsiTaskAttr and SAM TaskAttribute share 0..3
    cmd.cdb.set(this.cdbView);
    cmd.cdbLength = this.opts.cdbSize;
    clear(cmd.dataOut);
    clear(cmd.dataIn);
    cmd.dataOutLength = dataOutLength > 0 ? sgSlice(chain.readable, this.requestHeaderSize, dataOutLength, cmd.dataOut) : 0;
    cmd.dataInLength = dataInLength > 0 ? sgSlice(chain.writable, this.responseHeaderSize, dataInLength, cmd.dataIn) : 0;
    this.opts.target.submit(cmd);
  }

  /** Completion from the target core: encode the response and return the chain. */
  finish(slot: RequestSlot): void {
    const chain = slot.chain;
    const vring = this.vring;
    if (!chain || !vring) return;
    slot.chain = null;
    if (!vring.live) return; // stopped past its deadline: the guest memory is no longer ours to write
    const cmd = slot.cmd;
    const r = this.response;
    r.fill(0); // V6.6: unused sense bytes are zero, never stale data
    const senseLen = Math.min(cmd.senseLength, this.opts.senseSize);
    let residual = 0;
    if (cmd.dataInLength > 0) residual = cmd.dataInLength - cmd.dataInTransferred;
    else if (cmd.dataOutLength > 0) residual = cmd.dataOutLength - cmd.dataOutTransferred;
    const dv = this.responseView;
    dv.setUint32(CmdResp.sense_len, senseLen, true);
    dv.setUint32(CmdResp.residual, Math.max(0, residual), true);
    r[CmdResp.status] = cmd.status;
    r[CmdResp.response] = serviceResponseToVirtio(cmd.serviceResponse);
    if (senseLen > 0) r.set(cmd.sense.subarray(0, senseLen), CmdResp.sense);
    sgWrite(chain.writable, 0, r);
    vring.complete(chain, this.responseHeaderSize + cmd.dataInTransferred);
  }

  /** Complete without running a command (transport-level answer). */
  private answer(slot: RequestSlot, response: VirtioScsiResponse): void {
    const chain = slot.chain!;
    slot.chain = null;
    const r = this.response;
    r.fill(0);
    r[CmdResp.response] = response;
    sgWrite(chain.writable, 0, r);
    this.vring!.complete(chain, this.responseHeaderSize);
  }
}

// A CHECK CONDITION is response S_OK with status and sense (§5.6.6.1); the response code only
// carries transport-level outcomes.
export function serviceResponseToVirtio(sr: ServiceResponse): VirtioScsiResponse {
  switch (sr) {
    case ServiceResponse.COMMAND_COMPLETE: return VirtioScsiResponse.OK;
    case ServiceResponse.OVERRUN: return VirtioScsiResponse.OVERRUN;
    case ServiceResponse.ABORTED: return VirtioScsiResponse.ABORTED;
    case ServiceResponse.RESET: return VirtioScsiResponse.RESET;
    case ServiceResponse.FAILURE: return VirtioScsiResponse.FAILURE;
  }
}
