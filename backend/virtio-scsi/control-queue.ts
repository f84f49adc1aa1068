// virtio-scsi control queue (virtio 1.2 §5.6.6.2): task management functions and asynchronous
// notification query/subscribe. Every control buffer is returned: a TMF left unanswered hangs the
// guest's SCSI error handler (the bug of vhost-device-scsi and QEMU's contrib backend).

import { sgRead, sgWrite, type DescriptorChain } from '../../virtqueue';
import { TaskManagementFunction, TmfResponse, type ITNexus, type ScsiTarget } from '../../scsi-emul';
import type { ChainHandler, Vring } from '../vring';
import type { Logger } from '../log';
import { decodeLunField } from './lun-address';
import {
  AN_REQ_SIZE, AN_RESP_SIZE, ControlType, TMF_REQ_SIZE, TMF_RESP_SIZE, TmfSubtype,
  VIRTIO_SCSI_S_FUNCTION_COMPLETE, VirtioScsiResponse,
} from './spec';

const TMF_FUNCTIONS: Record<TmfSubtype, TaskManagementFunction> = {
  [TmfSubtype.ABORT_TASK]: TaskManagementFunction.ABORT_TASK,
  [TmfSubtype.ABORT_TASK_SET]: TaskManagementFunction.ABORT_TASK_SET,
  [TmfSubtype.CLEAR_ACA]: TaskManagementFunction.CLEAR_ACA,
  [TmfSubtype.CLEAR_TASK_SET]: TaskManagementFunction.CLEAR_TASK_SET,
  [TmfSubtype.I_T_NEXUS_RESET]: TaskManagementFunction.I_T_NEXUS_RESET,
  [TmfSubtype.LOGICAL_UNIT_RESET]: TaskManagementFunction.LOGICAL_UNIT_RESET,
  [TmfSubtype.QUERY_TASK]: TaskManagementFunction.QUERY_TASK,
  [TmfSubtype.QUERY_TASK_SET]: TaskManagementFunction.QUERY_TASK_SET,
};

export function tmfResponseToVirtio(r: TmfResponse): number {
  switch (r) {
    case TmfResponse.FUNCTION_COMPLETE: return VIRTIO_SCSI_S_FUNCTION_COMPLETE;
    case TmfResponse.FUNCTION_SUCCEEDED: return VirtioScsiResponse.FUNCTION_SUCCEEDED;
    case TmfResponse.FUNCTION_REJECTED: return VirtioScsiResponse.FUNCTION_REJECTED;
    case TmfResponse.INCORRECT_LOGICAL_UNIT_NUMBER: return VirtioScsiResponse.INCORRECT_LUN;
    case TmfResponse.SERVICE_DELIVERY_OR_TARGET_FAILURE: return VirtioScsiResponse.FAILURE;
  }
}

export interface ControlQueueOptions {
  target: ScsiTarget;
  nexus: ITNexus;
  log: Logger;
}

export class ControlQueue implements ChainHandler {
  private vring: Vring | null = null;
  private readonly request = new Uint8Array(TMF_REQ_SIZE);
  private readonly requestView = new DataView(this.request.buffer);
  private readonly anResponse = new Uint8Array(AN_RESP_SIZE);
  private readonly byte = new Uint8Array(1);

  constructor(private readonly opts: ControlQueueOptions) {}

  attach(vring: Vring): void { this.vring = vring; }
  releaseHeld(): number { return 0; }
  heldCount(): number { return 0; }

  handle(chain: DescriptorChain): void {
    const req = this.request;
    req.fill(0);
    const got = sgRead(chain.readable, 0, req); // V9.1: private copy, decided once
    if (got < 4) {
      this.reject(chain, 'control request shorter than its type field');
      return;
    }
    const type = this.requestView.getUint32(0, true);
    switch (type) {
      case ControlType.TMF:
        if (got < TMF_REQ_SIZE || chain.writableLength < TMF_RESP_SIZE) {
          this.reject(chain, `TMF request ${got} bytes / response ${chain.writableLength} bytes`);
          return;
        }
        this.taskManagement(chain);
        return;
      case ControlType.AN_QUERY:
      case ControlType.AN_SUBSCRIBE: {
        if (got < AN_REQ_SIZE || chain.writableLength < AN_RESP_SIZE) {
          this.reject(chain, `AN request ${got} bytes / response ${chain.writableLength} bytes`);
          return;
        }
        // No asynchronous events are supported: event_actual = 0 (§5.6.6.2.1).
        const r = this.anResponse;
        r.fill(0);
        r[4] = decodeLunField(req, 4) < 0 ? VirtioScsiResponse.BAD_TARGET : VirtioScsiResponse.OK;
        sgWrite(chain.writable, 0, r);
        this.vring!.complete(chain, AN_RESP_SIZE);
        return;
      }
      default:
        this.reject(chain, `unknown control request type ${type}`);
    }
  }

  private taskManagement(chain: DescriptorChain): void {
    const dv = this.requestView;
    const subtype = dv.getUint32(4, true); // guest-controlled: looked up, unknown → FUNCTION_REJECTED
    const lun = decodeLunField(this.request, 8);
    const tag = dv.getBigUint64(16, true);
    if (lun < 0) {
      this.respondByte(chain, VirtioScsiResponse.BAD_TARGET);
      return;
    }
    const fn = (TMF_FUNCTIONS as Record<number, TaskManagementFunction | undefined>)[subtype];
    if (fn === undefined) {
      this.respondByte(chain, VirtioScsiResponse.FUNCTION_REJECTED);
      return;
    }
    const vring = this.vring!;
    this.opts.log.debug(`TMF ${TmfSubtype[subtype]} lun ${lun} tag ${tag}`);
    this.opts.target.taskManagement(fn, this.opts.nexus, lun, tag, (response) => {
      if (!vring.live) return;
      this.respondByte(chain, tmfResponseToVirtio(response));
    });
  }

  private respondByte(chain: DescriptorChain, value: number): void {
    this.byte[0] = value;
    sgWrite(chain.writable, 0, this.byte);
    this.vring!.complete(chain, 1);
  }

  /** A malformed control request: answer FAILURE if there is room for a response byte, else break the queue. */
  private reject(chain: DescriptorChain, why: string): void {
    this.opts.log.rateLimited('bad-control', 'warn', `control queue: ${why}`);
    if (chain.writableLength >= 1) this.respondByte(chain, VirtioScsiResponse.FAILURE);
    else this.vring!.fail(`control request without a response buffer (${why})`);
  }
}
