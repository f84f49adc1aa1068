// COMPARE AND WRITE (SBC-3 r36 §5.2; reliability.md V7.9).
import type { Task } from './command';
import { Core, EXECUTE_ASYNC } from './command-def';
import type { LogicalUnit } from './logical-unit';
import { SenseError } from './sense';
import { be64Safe, copyFromSegments } from './bytes';
import { checkLbaRange } from './sbc';
import { SbcJob, finishJob, firstMismatch, jobRead, jobWrite, takeJob } from './sbc-job';
import { miscompare } from './sbc-verify';

/**
 * CDB (16 bytes): byte 1 WRPROTECT (7-5), DPO (4), FUA (3), FUA_NV (1); bytes 2-9 LBA; byte 13
 * NUMBER OF LOGICAL BLOCKS; byte 14 GROUP NUMBER. Data-out: n blocks of verify data then n
 * blocks of write data.
 */
export function parseCompareAndWrite(task: Task, cdb: Uint8Array, lu: LogicalUnit | null): void {
  const l = lu!;
  if ((cdb[1] & 0xe0) !== 0) throw SenseError.invalidCdbField(1, 7); // WRPROTECT, PROTECT=0
  const lba = be64Safe(cdb, 2); // guest-controlled u64: range-checked below
  const blocks = cdb[13];
  // VPD B0h MAXIMUM COMPARE AND WRITE LENGTH (SBC-3 r36 §5.2: larger → INVALID FIELD IN CDB).
  if (blocks > l.blockLimits.maxCompareAndWriteLength) throw SenseError.invalidCdbField(13);
  checkLbaRange(lba, blocks, l.blocks);
  task.lba = lba;
  task.blocks = blocks;
  task.fua = (cdb[1] & 0x08) !== 0;
  // NUMBER OF LOGICAL BLOCKS 0: nothing compared, written or transferred; not an error.
  task.dataLength = 2 * blocks * l.blockSize;
}

/**
 * Under an exclusive range lock — no READ, WRITE, WRITE SAME, UNMAP or other COMPARE AND
 * WRITE touches the blocks between our read and our write — copy the data-out privately
 * (V9.2), read the medium, compare with the verify half, and write the write half (FUA, or
 * write-through, makes it durable). A mismatch is MISCOMPARE with INFORMATION = offset of the
 * first differing byte from the start of the data-out buffer (§5.2), and nothing is written.
 */
export function executeCompareAndWrite(core: Core, task: Task): number {
  if (task.blocks === 0) return 0;
  const lu = task.lu!;
  if (task.lockState === 0 && !lu.rangeLock.acquire(task, task.lba, task.lba + task.blocks, true)) return EXECUTE_ASYNC;
  const job = takeJob(task, lu);
  copyFromSegments(task.cmd.dataOut, 0, job.ensureCopy(task.dataLength), 0, task.dataLength);
  job.pos = task.lba * lu.blockSize;
  job.b = task.blocks * lu.blockSize;
  job.fua = task.fua || !lu.writeCache;
  job.a = 0;
  job.start(cawStep);
  return EXECUTE_ASYNC;
}

function cawStep(job: SbcJob, err: Error | null): void {
  const task = job.task!;
  const n = job.b;
  if (err !== null || job.aborted) {
    finishJob(job, err, task.dataLength);
    return;
  }
  switch (job.a) {
    case 0:
      job.a = 1;
      jobRead(job, job.pos, n);
      return;
    case 1: {
      const i = firstMismatch(job.buf, 0, job.copy, 0, n);
      if (i >= 0) {
        finishJob(job, miscompare(i), task.dataLength);
        return;
      }
      job.a = 2;
      // The write half as its own view: one view per command, not per block.
      job.repeat.push(job.copy.subarray(n, 2 * n));
      jobWrite(job, job.pos, job.repeat, n, job.fua);
      return;
    }
    default:
      finishJob(job, null, task.dataLength);
  }
}
