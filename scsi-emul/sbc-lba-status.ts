// GET LBA STATUS (SERVICE ACTION IN(16) 9Eh / 12h, SBC-3 r36 §5.7).
import type { Task } from './command';
import type { Core } from './command-def';
import type { LogicalUnit } from './logical-unit';
import { Sense, SenseError } from './sense';
import { be32, be64Safe, putBe32, putBe64 } from './bytes';

/** PROVISIONING STATUS (SBC-3 r36 §5.7.3 table 58). */
export const enum ProvisioningStatus {
  MAPPED = 0x0,
  DEALLOCATED = 0x1,
  ANCHORED = 0x2,
}

const HEADER = 8;
const DESCRIPTOR = 16;
/** Descriptors per response: what the core's 4 KiB response scratch holds. */
const MAX_DESCRIPTORS = 255;
const MAX_DESCRIPTOR_BLOCKS = 0xffffffff;

/** CDB: bytes 2-9 STARTING LOGICAL BLOCK ADDRESS, 10-13 ALLOCATION LENGTH. */
export function parseGetLbaStatus(task: Task, cdb: Uint8Array, lu: LogicalUnit | null): void {
  const lba = be64Safe(cdb, 2); // guest-controlled u64: ≥ 2^53 → -1
  // A starting LBA past the last one is LBA OUT OF RANGE (§5.7.1).
  if (lba < 0 || lba >= lu!.blocks) throw new SenseError(Sense.LBA_OUT_OF_RANGE);
  task.lba = lba;
  task.dataLength = be32(cdb, 10);
}

/**
 * LBA status descriptors from the starting LBA on, as many as the allocation length holds
 * (at least one: a short allocation length truncates, PARAMETER DATA LENGTH still tells the
 * truth about what was built). Runs come from BlockStore.extentAt (SEEK_DATA/SEEK_HOLE for a
 * file, the chunk map for RAM); a store without it is all mapped. Byte runs are rounded to
 * blocks conservatively: a block partly mapped is mapped. Adjacent runs with the same status
 * are merged, so the first descriptor always starts at the starting LBA (§5.7.2).
 */
export function executeGetLbaStatus(core: Core, task: Task): number {
  const alloc = task.dataLength;
  if (alloc === 0) return 0;
  const lu = task.lu!;
  const bs = lu.blockSize;
  const cap = lu.blocks;
  const maxDesc = Math.max(1, Math.min(MAX_DESCRIPTORS, Math.floor((alloc - HEADER) / DESCRIPTOR)));
  const b = core.response(HEADER + maxDesc * DESCRIPTOR);
  const store = lu.store;
  let lba = task.lba;
  let k = 0;
  let lastStatus = -1;
  let lastCount = 0;
  while (lba < cap) {
    const maxBlocks = Math.min(cap - lba, MAX_DESCRIPTOR_BLOCKS);
    let status = ProvisioningStatus.MAPPED;
    let n = maxBlocks;
    if (store.extentAt !== undefined) {
      let ext;
      try {
        ext = store.extentAt(lba * bs, maxBlocks * bs);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EIO') throw new SenseError(Sense.UNRECOVERED_READ_ERROR);
        throw e;
      }
      if (ext.deallocated && ext.length >= bs) {
        status = ProvisioningStatus.DEALLOCATED;
        n = Math.floor(ext.length / bs);
      } else {
        n = Math.max(1, Math.ceil(ext.length / bs));
      }
      n = Math.min(n, maxBlocks);
    }
    if (status === lastStatus && lastCount + n <= MAX_DESCRIPTOR_BLOCKS) {
      lastCount += n;
      putBe32(b, HEADER + (k - 1) * DESCRIPTOR + 8, lastCount);
    } else {
      if (k === maxDesc) break;
      const off = HEADER + k * DESCRIPTOR;
      putBe64(b, off, lba);
      putBe32(b, off + 8, n);
      b[off + 12] = status;
      k++;
      lastStatus = status;
      lastCount = n;
    }
    lba += n;
  }
  // PARAMETER DATA LENGTH: the bytes after the field (§5.7.2 table 56).
  putBe32(b, 0, HEADER - 4 + k * DESCRIPTOR);
  return HEADER + k * DESCRIPTOR;
}
