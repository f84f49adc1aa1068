// WRITE SAME(10/16) (SBC-3 r36 §5.44, §5.45; reliability.md V7.8).
import type { Task } from './command';
import { Core, EXECUTE_ASYNC } from './command-def';
import type { LogicalUnit } from './logical-unit';
import { Opcode } from './constants';
import { SenseError } from './sense';
import { be16, be32, be64Safe, copyFromSegments } from './bytes';
import { checkLbaRange } from './sbc';
import { JOB_BATCH_BYTES, SbcJob, allZero, finishJob, jobDeallocate, jobFlush, jobWrite, takeJob } from './sbc-job';

const WS_UNMAP = 1;
const WS_NDOB = 2;
/** Most block views in one store write: the native engine's IOV limit. */
const MAX_IOV = 1024;

/**
 * Byte 1: WRPROTECT (7-5), ANCHOR (4), UNMAP (3), obsolete PBDATA/LBDATA (2-1, rejected by the
 * usage mask), NDOB (0, WRITE SAME(16) only).
 */
export function parseWriteSame(task: Task, cdb: Uint8Array, lu: LogicalUnit | null, _core: Core): void {
  const ws16 = cdb[0] === Opcode.WRITE_SAME_16;
  const lba = ws16 ? be64Safe(cdb, 2) : be32(cdb, 2); // guest-controlled: range-checked below
  const blocks = ws16 ? be32(cdb, 10) : be16(cdb, 7);
  const lengthByte = ws16 ? 10 : 7;
  const l = lu!;
  if ((cdb[1] & 0xe0) !== 0) throw SenseError.invalidCdbField(1, 7); // WRPROTECT, PROTECT=0
  // ANCHOR needs ANC_SUP=1 in VPD B2h (SBC-3 r36 §5.45): we have no anchored state.
  if ((cdb[1] & 0x10) !== 0 && !l.provisioning.ancSup) throw SenseError.invalidCdbField(1, 4);
  const unmap = (cdb[1] & 0x08) !== 0;
  // UNMAP=1 needs LBPWS (16) / LBPWS10 (10). A write-protected LU falls through to DATA
  // PROTECT instead (reliability.md V7.12 lists WRITE SAME with UNMAP).
  if (unmap && !l.readOnly && !(ws16 ? l.provisioning.lbpws : l.provisioning.lbpws10)) {
    throw SenseError.invalidCdbField(1, 3);
  }
  const ndob = ws16 && (cdb[1] & 0x01) !== 0;
  // WSNZ=1 (VPD B0h): NUMBER OF LOGICAL BLOCKS 0 is invalid rather than "to the end".
  if (blocks === 0 && l.blockLimits.wsnz) throw SenseError.invalidCdbField(lengthByte);
  if (blocks > l.blockLimits.maxWriteSameLength) throw SenseError.invalidCdbField(lengthByte);
  checkLbaRange(lba, blocks, l.blocks);
  task.lba = lba;
  task.blocks = blocks;
  task.aux = (unmap ? WS_UNMAP : 0) | (ndob ? WS_NDOB : 0);
  // Data-out: exactly one logical block, none with NDOB (zeros).
  task.dataLength = ndob ? 0 : l.blockSize;
}

/**
 * A private copy of the one block (V9.2), then: if UNMAP=1 on a thin LU and the block is all
 * zeros, deallocate the range (LBPRZ=1: it reads back as the zeros asked for, SBC-3 r36
 * §4.7.3.4.2); otherwise write it in batches of up to MAX_IOV views of that same block per
 * store write — one pwritev, no per-block buffers. UNMAP with a nonzero pattern writes.
 */
export function executeWriteSame(core: Core, task: Task): number {
  const lu = task.lu!;
  if (task.lockState === 0 && !lu.rangeLock.acquire(task, task.lba, task.lba + task.blocks, false)) return EXECUTE_ASYNC;
  const bs = lu.blockSize;
  const job = takeJob(task, lu);
  const block = job.ensureCopy(bs);
  if ((task.aux & WS_NDOB) !== 0) block.fill(0, 0, bs);
  else copyFromSegments(task.cmd.dataOut, 0, block, 0, bs);
  job.pos = task.lba * bs;
  job.end = job.pos + task.blocks * bs;
  job.fua = !lu.writeCache; // no FUA bit; write-through makes every write durable
  if ((task.aux & WS_UNMAP) !== 0 && lu.provisioning.lbprz && lu.store.deallocate !== undefined && allZero(block, 0, bs)) {
    job.start(deallocateStep);
    return EXECUTE_ASYNC;
  }
  const view = bs === block.byteLength ? block : block.subarray(0, bs);
  const count = Math.min(MAX_IOV, JOB_BATCH_BYTES / bs, task.blocks);
  for (let i = 0; i < count; i++) job.repeat.push(view);
  job.start(writeStep);
  return EXECUTE_ASYNC;
}

function writeStep(job: SbcJob, err: Error | null): void {
  const task = job.task!;
  if (err !== null || job.pos >= job.end || job.aborted) {
    finishJob(job, err, task.dataLength);
    return;
  }
  const n = Math.min(job.repeat.length * job.lu!.blockSize, job.end - job.pos);
  const pos = job.pos;
  job.pos += n;
  jobWrite(job, pos, job.repeat, n, job.fua);
}

function deallocateStep(job: SbcJob, err: Error | null): void {
  const task = job.task!;
  if (err !== null || job.a === 2) {
    finishJob(job, err, task.dataLength);
    return;
  }
  if (job.a === 1) {
    // Write-through: the deallocation must be as durable as a write would have been.
    job.a = 2;
    if (job.fua) jobFlush(job);
    else finishJob(job, null, task.dataLength);
    return;
  }
  job.a = 1;
  jobDeallocate(job, job.pos, job.end - job.pos);
}
