// UNMAP (SBC-3 r36 §5.28; reliability.md V7.6): deallocates ranges of a thin LU.
import type { Task } from './command';
import { Core, EXECUTE_ASYNC } from './command-def';
import type { LogicalUnit } from './logical-unit';
import { Sense, SenseError } from './sense';
import { be16, be32, be64Safe, copyFromSegments } from './bytes';
import { checkLbaRange } from './sbc';
import { SbcJob, finishJob, jobDeallocate, jobFlush, takeJob } from './sbc-job';

/** Header (8 bytes) then 16-byte block descriptors (SBC-3 r36 §5.28.2 tables 91, 92). */
const HEADER = 8;
const DESCRIPTOR = 16;
/** Largest parameter list: the CDB's PARAMETER LIST LENGTH is 16 bits. */
const scratch = new Uint8Array(0xffff);

/** CDB: byte 1 ANCHOR (bit 0), byte 6 GROUP NUMBER, bytes 7-8 PARAMETER LIST LENGTH. */
export function parseUnmap(task: Task, cdb: Uint8Array, lu: LogicalUnit | null): void {
  const l = lu!;
  if ((cdb[1] & 0x01) !== 0 && !l.provisioning.ancSup) throw SenseError.invalidCdbField(1, 0);
  // LBPU=0: the LU does not support UNMAP (SBC-3 r36 §6.5.4). A write-protected LU goes on
  // to DATA PROTECT / WRITE PROTECTED (reliability.md V7.12) instead.
  if (!l.provisioning.lbpu && !l.readOnly) throw new SenseError(Sense.INVALID_COMMAND_OPERATION_CODE);
  const len = be16(cdb, 7);
  // 0: nothing to do, not an error; 1..7 cannot hold the header (§5.28.1).
  if (len > 0 && len < HEADER) throw new SenseError(Sense.PARAMETER_LIST_LENGTH_ERROR);
  task.dataLength = len;
}

/**
 * Checks the whole parameter list (a private copy, V9.2) before deallocating anything, and
 * returns the number of descriptors. Returns the descriptors' LBA envelope in env.
 */
function validate(p: Uint8Array, len: number, lu: LogicalUnit, env: { lba: number; end: number }): number {
  const dataLength = be16(p, 0);
  const bdLength = be16(p, 2);
  // The lengths may not claim more bytes than were transferred.
  if (dataLength + 2 > len || bdLength + HEADER > len) throw new SenseError(Sense.PARAMETER_LIST_LENGTH_ERROR);
  // UNMAP DATA LENGTH counts the bytes after itself: 6 header bytes plus the descriptors.
  if (dataLength < bdLength + 6) throw SenseError.invalidParameterField(0);
  for (let i = 4; i < HEADER; i++) if (p[i] !== 0) throw SenseError.invalidParameterField(i, 31 - Math.clz32(p[i]));
  // A trailing partial descriptor is ignored (§5.28.2).
  const count = Math.floor(bdLength / DESCRIPTOR);
  if (count > lu.blockLimits.maxUnmapBlockDescriptorCount) throw SenseError.invalidParameterField(2);
  let total = 0;
  env.lba = lu.blocks;
  env.end = 0;
  for (let i = 0; i < count; i++) {
    const off = HEADER + i * DESCRIPTOR;
    const lba = be64Safe(p, off); // guest-controlled u64: ≥ 2^53 → -1 → LBA OUT OF RANGE
    const n = be32(p, off + 8);
    for (let j = off + 12; j < off + DESCRIPTOR; j++) {
      if (p[j] !== 0) throw SenseError.invalidParameterField(j, 31 - Math.clz32(p[j]));
    }
    checkLbaRange(lba, n, lu.blocks);
    total += n;
    if (total > lu.blockLimits.maxUnmapLbaCount) throw SenseError.invalidParameterField(off + 8);
    if (n > 0) {
      if (lba < env.lba) env.lba = lba;
      if (lba + n > env.end) env.end = lba + n;
    }
  }
  return count;
}

const envelope = { lba: 0, end: 0 };

/**
 * Validate, then take a shared range lock over the descriptors' envelope and deallocate each
 * range in order (the file store punches holes, the RAM store drops chunks); write-through
 * (WCE=0) flushes at the end. A lock wait re-runs this, re-validating a fresh copy.
 */
export function executeUnmap(core: Core, task: Task): number {
  const len = task.dataLength;
  if (len === 0) return 0;
  const lu = task.lu!;
  copyFromSegments(task.cmd.dataOut, 0, scratch, 0, len);
  const count = validate(scratch, len, lu, envelope);
  if (count === 0 || envelope.end === 0) {
    task.cmd.dataOutTransferred = len;
    return 0;
  }
  if (task.lockState === 0 && !lu.rangeLock.acquire(task, envelope.lba, envelope.end, false)) return EXECUTE_ASYNC;
  if (lu.store.deallocate === undefined) throw new Error(`UNMAP: store ${lu.store.name} cannot deallocate`);
  const job = takeJob(task, lu);
  job.ensureCopy(len).set(scratch.subarray(0, len));
  job.a = 0; // next descriptor
  job.b = count;
  job.fua = !lu.writeCache;
  job.start(unmapStep);
  return EXECUTE_ASYNC;
}

function unmapStep(job: SbcJob, err: Error | null): void {
  const task = job.task!;
  if (err !== null || job.aborted || job.a > job.b) {
    finishJob(job, err, task.dataLength);
    return;
  }
  const bs = job.lu!.blockSize;
  while (job.a < job.b) {
    const off = HEADER + job.a * DESCRIPTOR;
    job.a++;
    const n = be32(job.copy, off + 8);
    if (n === 0) continue;
    jobDeallocate(job, be64Safe(job.copy, off) * bs, n * bs);
    return;
  }
  job.a++; // past the last descriptor: flush if write-through, then finish
  if (job.fua) jobFlush(job);
  else finishJob(job, null, task.dataLength);
}
