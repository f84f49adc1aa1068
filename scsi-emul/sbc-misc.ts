// PRE-FETCH(10/16), WRITE ATOMIC(16) and FORMAT UNIT (SBC-3 r36 §5.11, §5.12, §5.3; SBC-4
// §5.48 for WRITE ATOMIC).
import type { Task } from './command';
import { Core, EXECUTE_ASYNC } from './command-def';
import type { LogicalUnit } from './logical-unit';
import { Opcode, ScsiStatus } from './constants';
import { Sense, SenseError } from './sense';
import { be16, be32, be64Safe, copyFromSegments } from './bytes';
import { checkLbaRange } from './sbc';
import { JOB_BATCH_BYTES, SbcJob, finishJob, jobDeallocate, jobFlush, jobRead, releaseJob, takeJob } from './sbc-job';

// ---- PRE-FETCH ----

const PF_IMMED = 1;
const PF_FITS = 2;

/**
 * CDB: byte 1 IMMED (bit 1); LBA; PREFETCH LENGTH (0: through the last LBA); GROUP NUMBER.
 * A length above MAXIMUM PREFETCH LENGTH (VPD B0h) is rejected like one above MAXIMUM TRANSFER
 * LENGTH; a "to the end" request larger than it prefetches what fits and ends GOOD.
 */
export function parsePrefetch(task: Task, cdb: Uint8Array, lu: LogicalUnit | null): void {
  const pf16 = cdb[0] === Opcode.PRE_FETCH_16;
  const lba = pf16 ? be64Safe(cdb, 2) : be32(cdb, 2); // guest-controlled: range-checked below
  const blocks = pf16 ? be32(cdb, 10) : be16(cdb, 7);
  const l = lu!;
  const max = l.blockLimits.maxPrefetchLength;
  if (blocks > max) throw SenseError.invalidCdbField(pf16 ? 10 : 7);
  checkLbaRange(lba, blocks, l.blocks);
  if (blocks === 0 && lba >= l.blocks) throw new SenseError(Sense.LBA_OUT_OF_RANGE);
  const want = blocks === 0 ? l.blocks - lba : blocks;
  task.lba = lba;
  task.blocks = Math.min(want, max);
  task.aux = ((cdb[1] & 0x02) !== 0 ? PF_IMMED : 0) | (want <= max ? PF_FITS : 0);
  task.dataLength = 0;
}

/**
 * The cache is the host page cache: reading the blocks puts them there. SBC-3 r36 §5.11:
 * IMMED=0 → CONDITION MET once the blocks are in the cache (GOOD if not all of them fitted);
 * IMMED=1 → status at once, CONDITION MET if the cache can take them all, and the reads go
 * on in the background. An O_DIRECT store bypasses the page cache: nothing can be
 * prefetched, so GOOD without I/O.
 */
export function executePrefetch(core: Core, task: Task): number {
  const lu = task.lu!;
  if (task.blocks === 0 || lu.store.direct === true) return 0;
  const met = (task.aux & PF_FITS) !== 0;
  const bs = lu.blockSize;
  const immed = (task.aux & PF_IMMED) !== 0;
  const job = takeJob(immed ? null : task, lu);
  job.pos = task.lba * bs;
  job.end = job.pos + task.blocks * bs;
  if (met) task.goodStatus = ScsiStatus.CONDITION_MET;
  job.start(prefetchStep);
  return immed ? 0 : EXECUTE_ASYNC;
}

function prefetchStep(job: SbcJob, err: Error | null): void {
  if (err !== null || job.pos >= job.end || job.aborted) {
    // A read error only means the blocks did not reach the cache: report it like a READ.
    if (job.task === null) releaseJob(job);
    else finishJob(job, err, 0);
    return;
  }
  const n = Math.min(JOB_BATCH_BYTES, job.end - job.pos);
  const pos = job.pos;
  job.pos += n;
  jobRead(job, pos, n);
}

// ---- WRITE ATOMIC(16) ----

/**
 * CDB: byte 1 WRPROTECT (7-5), DPO (4), FUA (3); bytes 2-9 LBA; 10-11 ATOMIC BOUNDARY; 12-13
 * TRANSFER LENGTH; 14 GROUP NUMBER. Limits from VPD B0h bytes 44-63 (lu.blockLimits).
 */
export function parseWriteAtomic(task: Task, cdb: Uint8Array, lu: LogicalUnit | null, core: Core): void {
  const l = lu!;
  const lim = l.blockLimits;
  if ((cdb[1] & 0xe0) !== 0) throw SenseError.invalidCdbField(1, 7); // WRPROTECT, PROTECT=0
  const lba = be64Safe(cdb, 2); // guest-controlled u64: range-checked below
  const boundary = be16(cdb, 10);
  const blocks = be16(cdb, 12);
  // SBC-4 §5.48: a boundary above MAXIMUM ATOMIC BOUNDARY SIZE (0: none supported) is invalid.
  if (boundary > lim.maxAtomicBoundarySize) throw SenseError.invalidCdbField(10);
  const max = Math.min(lim.maxAtomicTransferLength, Math.floor(core.maxTransferBytes / l.blockSize));
  if (blocks > max) throw SenseError.invalidCdbField(12);
  if (lim.atomicAlignment > 0 && lba % lim.atomicAlignment !== 0) throw SenseError.invalidCdbField(2);
  if (lim.atomicTransferLengthGranularity > 0 && blocks % lim.atomicTransferLengthGranularity !== 0) {
    throw SenseError.invalidCdbField(12);
  }
  checkLbaRange(lba, blocks, l.blocks);
  task.lba = lba;
  task.blocks = blocks;
  task.fua = (cdb[1] & 0x08) !== 0;
  task.dataLength = blocks * l.blockSize;
}

/**
 * One store write under an exclusive range lock: every other command touching these blocks
 * (they all take the lock) sees all of the old data or all of the new. This is atomicity
 * against concurrent commands; after a host crash the blocks may be torn unless the file
 * system makes the write atomic (the store issues a single pwritev, the O_DIRECT bounce path
 * excepted).
 */
export function executeWriteAtomic(core: Core, task: Task): number {
  if (task.blocks === 0) return 0;
  const lu = task.lu!;
  if (task.lockState === 0 && !lu.rangeLock.acquire(task, task.lba, task.lba + task.blocks, true)) return EXECUTE_ASYNC;
  return core.startWrite(task, task.lba * lu.blockSize, task.dataLength, task.fua || !lu.writeCache);
}

// ---- FORMAT UNIT ----

/**
 * CDB (6 bytes): byte 1 FMTPINFO (7-6), LONGLIST (5), FMTDATA (4), CMPLST (3), DEFECT LIST
 * FORMAT (2-0). Without FMTDATA there is no parameter list and LONGLIST, CMPLST and DEFECT
 * LIST FORMAT describe nothing, so they are ignored.
 */
export function parseFormatUnit(task: Task, cdb: Uint8Array): void {
  // FMTPINFO ≠ 0 asks for protection information; INQUIRY PROTECT=0 (§5.3.2 table 36).
  if ((cdb[1] & 0xc0) !== 0) throw SenseError.invalidCdbField(1, 7);
  const fmtdata = (cdb[1] & 0x10) !== 0;
  const longlist = (cdb[1] & 0x20) !== 0;
  // The parameter list header: 4 bytes short, 8 long (§5.3.2.2 tables 37, 38).
  task.dataLength = !fmtdata ? 0 : longlist ? 8 : 4;
}

function msb(v: number): number {
  return 31 - Math.clz32(v);
}

const header = new Uint8Array(8);

/**
 * Checks the parameter list header: no protection, no initialization pattern, no defect list
 * (we have no defects to manage), FOV=0 with its dependent bits clear. IMMED is accepted;
 * status comes after the (quick) format either way.
 */
function checkFormatHeader(p: Uint8Array, long: boolean): void {
  if (p[0] !== 0) throw SenseError.invalidParameterField(0, msb(p[0])); // reserved, PROTECTION FIELD USAGE
  const b1 = p[1];
  // FOV=0: DPRY, DCRT, STPF and IP must be zero (§5.3.2.3).
  if ((b1 & 0x80) === 0 && (b1 & 0x78) !== 0) throw SenseError.invalidParameterField(1, msb(b1 & 0x78));
  if ((b1 & 0x08) !== 0) throw SenseError.invalidParameterField(1, 3); // IP: no initialization patterns
  if ((b1 & 0x05) !== 0) throw SenseError.invalidParameterField(1, msb(b1 & 0x05)); // obsolete, vendor specific
  if (long) {
    if (p[2] !== 0) throw SenseError.invalidParameterField(2, msb(p[2]));
    if (p[3] !== 0) throw SenseError.invalidParameterField(3, msb(p[3])); // P_I_INFORMATION, interval exponent
    if (be32(p, 4) !== 0) throw SenseError.invalidParameterField(4);
  } else if (be16(p, 2) !== 0) {
    throw SenseError.invalidParameterField(2);
  }
}

/**
 * A quick format: under an exclusive lock over the whole medium, a thin LU deallocates every
 * block (they read as zeros, LBPRZ=1), a fully provisioned one keeps its data; then the cache
 * is flushed so the result is durable before GOOD.
 */
export function executeFormatUnit(core: Core, task: Task): number {
  const lu = task.lu!;
  const len = task.dataLength;
  if (len > 0) {
    copyFromSegments(task.cmd.dataOut, 0, header, 0, len);
    checkFormatHeader(header, len === 8);
  }
  if (task.lockState === 0 && !lu.rangeLock.acquire(task, 0, lu.blocks, true)) return EXECUTE_ASYNC;
  const job = takeJob(task, lu);
  job.a = lu.provisioning.lbprz && lu.store.deallocate !== undefined ? 0 : 1;
  job.end = lu.blocks * lu.blockSize;
  job.start(formatStep);
  return EXECUTE_ASYNC;
}

function formatStep(job: SbcJob, err: Error | null): void {
  const task = job.task!;
  if (err !== null || job.a === 2) {
    finishJob(job, err, task.dataLength);
    return;
  }
  if (job.a === 0) {
    job.a = 1;
    jobDeallocate(job, 0, job.end);
    return;
  }
  job.a = 2;
  jobFlush(job);
}
