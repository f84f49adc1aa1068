// VERIFY(10/12/16) and WRITE AND VERIFY(10/12/16) (SBC-3 r36 §5.41-5.43, §5.36-5.38).
import type { Task } from './command';
import { Core, EXECUTE_ASYNC } from './command-def';
import type { LogicalUnit } from './logical-unit';
import { Opcode } from './constants';
import { Sense, SenseError } from './sense';
import { be16, be32, be64Safe, copyFromSegments } from './bytes';
import { checkLbaRange } from './sbc';
import { JOB_BATCH_BYTES, SbcJob, finishJob, firstMismatch, jobRead, jobWrite, takeJob } from './sbc-job';

/** BYTCHK values (SBC-3 r36 §5.41 table 107). */
export const enum ByteCheck {
  /** medium verification, no data-out */
  MEDIUM = 0,
  /** data-out holds every block: compare each */
  COMPARE = 1,
  /** data-out holds one block: compare it with each block of the range */
  ONE_BLOCK = 3,
}

interface Geometry {
  lba: number;
  blocks: number;
  /** byte of the length field, for its field pointer */
  lengthByte: number;
}

const geo: Geometry = { lba: 0, blocks: 0, lengthByte: 0 };

/** LBA and length of the (10)/(12)/(16) layouts, which VERIFY and WRITE AND VERIFY share with READ. */
function readGeometry(cdb: Uint8Array, size: 10 | 12 | 16): Geometry {
  if (size === 10) {
    geo.lba = be32(cdb, 2);
    geo.blocks = be16(cdb, 7);
    geo.lengthByte = 7;
  } else if (size === 12) {
    geo.lba = be32(cdb, 2);
    geo.blocks = be32(cdb, 6);
    geo.lengthByte = 6;
  } else {
    geo.lba = be64Safe(cdb, 2); // guest-controlled u64: ≥ 2^53 becomes -1, rejected as out of range
    geo.blocks = be32(cdb, 10);
    geo.lengthByte = 10;
  }
  return geo;
}

function cdbSize(op: number): 10 | 12 | 16 {
  switch (op) {
    case Opcode.VERIFY_10: case Opcode.WRITE_AND_VERIFY_10: return 10;
    case Opcode.VERIFY_12: case Opcode.WRITE_AND_VERIFY_12: return 12;
    default: return 16;
  }
}

/** The miscompare verdict (SBC-3 r36 §5.41: INFORMATION = offset of the first differing byte). */
export function miscompare(offset: number): SenseError {
  return new SenseError(Sense.MISCOMPARE_DURING_VERIFY_OPERATION, null, BigInt(offset));
}

// ---- VERIFY ----

export function parseVerify(task: Task, cdb: Uint8Array, lu: LogicalUnit | null, core: Core): void {
  const g = readGeometry(cdb, cdbSize(cdb[0]));
  // VRPROTECT: standard INQUIRY PROTECT=0, so only 000b is valid (SBC-3 r36 §5.41 table 106).
  if ((cdb[1] & 0xe0) !== 0) throw SenseError.invalidCdbField(1, 7);
  const bytchk = (cdb[1] >>> 1) & 0x03;
  if (bytchk === 0b10) throw SenseError.invalidCdbField(1, 2); // reserved (table 107)
  const bs = lu!.blockSize;
  // With BYTCHK=01b the data-out is the whole range: MAXIMUM TRANSFER LENGTH applies (§6.5.3).
  if (bytchk === ByteCheck.COMPARE && g.blocks > Math.floor(core.maxTransferBytes / bs)) {
    throw SenseError.invalidCdbField(g.lengthByte);
  }
  checkLbaRange(g.lba, g.blocks, lu!.blocks);
  task.lba = g.lba;
  task.blocks = g.blocks;
  task.aux = bytchk;
  // VERIFICATION LENGTH 0: nothing is verified or transferred, not an error.
  task.dataLength = g.blocks === 0 ? 0 : bytchk === ByteCheck.COMPARE ? g.blocks * bs
    : bytchk === ByteCheck.ONE_BLOCK ? bs : 0;
}

/**
 * Reads the range in JOB_BATCH_BYTES pieces under a shared range lock. BYTCHK=00b discards
 * the data (a read error is the verification failure); 01b compares with a private copy of
 * the matching part of the data-out; 11b compares every block with a private copy of the one
 * data-out block. MISCOMPARE INFORMATION is the byte offset from the start of the verified
 * range, which for 01b is the offset into the data-out buffer.
 */
export function executeVerify(core: Core, task: Task): number {
  if (task.blocks === 0) return 0;
  const lu = task.lu!;
  if (task.lockState === 0 && !lu.rangeLock.acquire(task, task.lba, task.lba + task.blocks, false)) return EXECUTE_ASYNC;
  const bs = lu.blockSize;
  const job = takeJob(task, lu);
  job.pos = task.lba * bs;
  job.end = job.pos + task.blocks * bs;
  job.a = task.aux;
  if (task.aux === ByteCheck.ONE_BLOCK) copyFromSegments(task.cmd.dataOut, 0, job.ensureCopy(bs), 0, bs);
  job.start(verifyStep);
  return EXECUTE_ASYNC;
}

function verifyStep(job: SbcJob, err: Error | null): void {
  const task = job.task!;
  if (err !== null) {
    finishJob(job, err, task.dataLength);
    return;
  }
  const n = job.b;
  if (n > 0) {
    const bs = job.lu!.blockSize;
    if (job.a === ByteCheck.COMPARE) {
      const i = firstMismatch(job.buf, 0, job.copy, 0, n);
      if (i >= 0) {
        finishJob(job, miscompare(job.done + i), task.dataLength);
        return;
      }
    } else if (job.a === ByteCheck.ONE_BLOCK) {
      for (let off = 0; off < n; off += bs) {
        const i = firstMismatch(job.buf, off, job.copy, 0, bs);
        if (i >= 0) {
          finishJob(job, miscompare(job.done + off + i), task.dataLength);
          return;
        }
      }
    }
    job.done += n;
    job.pos += n;
    job.b = 0;
  }
  if (job.pos >= job.end || job.aborted) {
    finishJob(job, null, task.dataLength);
    return;
  }
  const next = Math.min(JOB_BATCH_BYTES, job.end - job.pos);
  // Private copy of this part of the data-out (V9.2): what is compared cannot change under us.
  if (job.a === ByteCheck.COMPARE) copyFromSegments(task.cmd.dataOut, job.done, job.ensureCopy(next), 0, next);
  job.b = next;
  jobRead(job, job.pos, next);
}

// ---- WRITE AND VERIFY ----

export function parseWriteAndVerify(task: Task, cdb: Uint8Array, lu: LogicalUnit | null, core: Core): void {
  const g = readGeometry(cdb, cdbSize(cdb[0]));
  if ((cdb[1] & 0xe0) !== 0) throw SenseError.invalidCdbField(1, 7); // WRPROTECT, PROTECT=0
  const bytchk = (cdb[1] >>> 1) & 0x03;
  // BYTCHK 00b (verify the medium) and 01b (compare); 1xb is reserved for WRITE AND VERIFY.
  if (bytchk > 1) throw SenseError.invalidCdbField(1, 2);
  const bs = lu!.blockSize;
  if (g.blocks > Math.floor(core.maxTransferBytes / bs)) throw SenseError.invalidCdbField(g.lengthByte);
  checkLbaRange(g.lba, g.blocks, lu!.blocks);
  task.lba = g.lba;
  task.blocks = g.blocks;
  task.aux = bytchk;
  task.dataLength = g.blocks * bs;
}

/**
 * Per JOB_BATCH_BYTES piece: copy the data-out privately, write it with FUA (the verify is of
 * the medium, so the data must be there, SBC-3 r36 §5.36), read it back, and with BYTCHK=01b
 * compare. Stages in job.b: 0 = start a piece, 1 = written, 2 = read back.
 */
export function executeWriteAndVerify(core: Core, task: Task): number {
  if (task.blocks === 0) return 0;
  const lu = task.lu!;
  if (task.lockState === 0 && !lu.rangeLock.acquire(task, task.lba, task.lba + task.blocks, false)) return EXECUTE_ASYNC;
  const bs = lu.blockSize;
  const job = takeJob(task, lu);
  job.pos = task.lba * bs;
  job.end = job.pos + task.blocks * bs;
  job.a = task.aux;
  job.start(writeVerifyStep);
  return EXECUTE_ASYNC;
}

function writeVerifyStep(job: SbcJob, err: Error | null): void {
  const task = job.task!;
  if (err !== null) {
    finishJob(job, err, job.done);
    return;
  }
  const n = Math.min(JOB_BATCH_BYTES, job.end - job.pos);
  if (job.b === 1) {
    job.b = 2; // written: read it back
    jobRead(job, job.pos, n);
    return;
  }
  if (job.b === 2) {
    if (job.a === ByteCheck.COMPARE) {
      const i = firstMismatch(job.buf, 0, job.copy, 0, n);
      if (i >= 0) {
        finishJob(job, miscompare(job.done + i), job.done + n);
        return;
      }
    }
    job.done += n;
    job.pos += n;
    job.b = 0;
  }
  if (job.pos >= job.end || job.aborted) {
    finishJob(job, null, job.done);
    return;
  }
  const m = Math.min(JOB_BATCH_BYTES, job.end - job.pos);
  copyFromSegments(task.cmd.dataOut, job.done, job.ensureCopy(m), 0, m);
  job.b = 1;
  jobWrite(job, job.pos, job.copySeg, m, true);
}

