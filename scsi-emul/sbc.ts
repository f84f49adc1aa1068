// Handlers for the SBC-3 commands: READ/WRITE(6/10/12/16), READ CAPACITY(10/16),
// SYNCHRONIZE CACHE(10/16), START STOP UNIT.
import type { Task } from './command';
import { Core, EXECUTE_ASYNC } from './command-def';
import type { LogicalUnit } from './logical-unit';
import { Opcode } from './constants';
import { Sense, SenseError } from './sense';
import { be16, be32, be64Safe, putBe32, putBe64 } from './bytes';

/**
 * reliability.md V7.3: `lba + blocks <= capacity`, written so it cannot overflow. Every
 * operand is an exact integer below 2^53 (be64Safe maps a u64 LBA ≥ 2^53 to -1, which no
 * capacity can reach), so this is exact without BigInt on the hot path.
 */
export function checkLbaRange(lba: number, blocks: number, capacity: number): void {
  if (lba < 0 || !(lba <= capacity && blocks <= capacity - lba)) {
    throw new SenseError(Sense.LBA_OUT_OF_RANGE);
  }
}

// ---- READ / WRITE (SBC-3 §5.8-5.11, §5.32-5.35) ----

/** Per-variant field positions: TRANSFER LENGTH byte (for the field pointer). */
function rwTransferLengthByte(op: number): number {
  switch (op) {
    case Opcode.READ_6: case Opcode.WRITE_6: return 4;
    case Opcode.READ_10: case Opcode.WRITE_10: return 7;
    case Opcode.READ_12: case Opcode.WRITE_12: return 6;
    default: return 10;
  }
}

export function parseReadWrite(task: Task, cdb: Uint8Array, lu: LogicalUnit | null, core: Core): void {
  const op = cdb[0];
  let lba: number;
  let blocks: number;
  let fua = false;
  switch (op) {
    case Opcode.READ_6:
    case Opcode.WRITE_6:
      // 21-bit LBA; TRANSFER LENGTH 0 means 256 blocks (SBC-3 §5.9, §5.33).
      lba = ((cdb[1] & 0x1f) << 16) | be16(cdb, 2);
      blocks = cdb[4] === 0 ? 256 : cdb[4];
      break;
    case Opcode.READ_10:
    case Opcode.WRITE_10:
      lba = be32(cdb, 2);
      blocks = be16(cdb, 7);
      break;
    case Opcode.READ_12:
    case Opcode.WRITE_12:
      lba = be32(cdb, 2);
      blocks = be32(cdb, 6);
      break;
    default: // (16)
      lba = be64Safe(cdb, 2); // guest-controlled u64: ≥ 2^53 becomes -1, rejected below
      blocks = be32(cdb, 10);
      break;
  }
  if (op !== Opcode.READ_6 && op !== Opcode.WRITE_6) {
    // RDPROTECT / WRPROTECT: standard INQUIRY PROTECT=0, so any nonzero value is invalid
    // (SBC-3 §5.8 table 35 / §5.32 table 98). DPO is a hint we may ignore; FUA is honoured.
    if ((cdb[1] & 0xe0) !== 0) throw SenseError.invalidCdbField(1, 7);
    fua = (cdb[1] & 0x08) !== 0;
  }
  const blockSize = lu!.blockSize;
  // VPD B0h MAXIMUM TRANSFER LENGTH (SBC-3 §6.5.3): a larger request is an invalid field.
  if (blocks > Math.floor(core.maxTransferBytes / blockSize)) {
    throw SenseError.invalidCdbField(rwTransferLengthByte(op));
  }
  checkLbaRange(lba, blocks, lu!.blocks);
  task.lba = lba;
  task.blocks = blocks;
  task.dataLength = blocks * blockSize;
  task.fua = fua;
}

export function executeRead(core: Core, task: Task): number {
  // SBC-3 §5.10: TRANSFER LENGTH 0 in READ(10/12/16) transfers nothing and is not an error.
  if (task.blocks === 0) return 0;
  const lu = task.lu!;
  // Shared range lock: a counter bump unless a COMPARE AND WRITE / WRITE ATOMIC exists (range-lock.ts).
  if (task.lockState === 0 && !lu.rangeLock.acquire(task, task.lba, task.lba + task.blocks, false)) return EXECUTE_ASYNC;
  return core.startRead(task, task.lba * lu.blockSize, task.dataLength);
}

export function executeWrite(core: Core, task: Task): number {
  if (task.blocks === 0) return 0;
  const lu = task.lu!;
  if (task.lockState === 0 && !lu.rangeLock.acquire(task, task.lba, task.lba + task.blocks, false)) return EXECUTE_ASYNC;
  // Write-through (WCE=0) behaves as if every write had FUA (reliability.md §4.6).
  return core.startWrite(task, task.lba * lu.blockSize, task.dataLength, task.fua || !lu.writeCache);
}

// ---- READ CAPACITY (SBC-3 §5.15, §5.16) ----

export function parseReadCapacity10(task: Task, cdb: Uint8Array): void {
  // PMI=0 with a nonzero LOGICAL BLOCK ADDRESS is invalid (SBC-3 §5.15.1; both fields are
  // obsolete in later revisions, QEMU rejects the same way).
  if ((cdb[8] & 0x01) === 0 && be32(cdb, 2) !== 0) throw SenseError.invalidCdbField(2);
  task.dataLength = 8; // fixed transfer: a smaller buffer is an OVERRUN, not a truncation
}

export function executeReadCapacity10(core: Core, task: Task): number {
  const lu = task.lu!;
  const b = core.response(8);
  const last = lu.blocks - 1;
  // RETURNED LOGICAL BLOCK ADDRESS FFFFFFFFh: "use READ CAPACITY(16)" (SBC-3 §5.15.2).
  putBe32(b, 0, last > 0xffffffff ? 0xffffffff : last);
  putBe32(b, 4, lu.blockSize);
  return 8;
}

export function parseReadCapacity16(task: Task, cdb: Uint8Array): void {
  if ((cdb[14] & 0x01) === 0) {
    for (let i = 2; i < 10; i++) if (cdb[i] !== 0) throw SenseError.invalidCdbField(2);
  }
  task.dataLength = be32(cdb, 10);
}

export function executeReadCapacity16(core: Core, task: Task): number {
  const lu = task.lu!;
  // SBC-3 r36 §5.16.2 table 65: byte 12 P_TYPE/PROT_EN=0 (no protection information); byte 13
  // LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT (3 for 512e); byte 14 LBPME and LBPRZ from the
  // same lu.provisioning VPD B2h reports; LOWEST ALIGNED LBA 0.
  const b = core.response(32);
  putBe64(b, 0, lu.blocks - 1);
  putBe32(b, 8, lu.blockSize);
  b[13] = lu.physicalBlockExponent & 0x0f;
  const p = lu.provisioning;
  b[14] = (p.lbpme ? 0x80 : 0) | (p.lbprz ? 0x40 : 0);
  return 32;
}

// ---- SYNCHRONIZE CACHE (SBC-3 §5.22, §5.23) ----

export function parseSynchronizeCache(task: Task, cdb: Uint8Array, lu: LogicalUnit | null): void {
  let lba: number;
  let blocks: number;
  if (cdb[0] === Opcode.SYNCHRONIZE_CACHE_10) {
    lba = be32(cdb, 2);
    blocks = be16(cdb, 7);
  } else {
    lba = be64Safe(cdb, 2);
    blocks = be32(cdb, 10);
  }
  // NUMBER OF LOGICAL BLOCKS 0 = from LBA to the end of the medium; the range must still be valid.
  checkLbaRange(lba, blocks, lu!.blocks);
  task.lba = lba;
  task.blocks = blocks;
  task.dataLength = 0;
}

/**
 * Write-back: every write that completed before this command was received has returned from
 * the store, so its data is in the host cache; fdatasync then makes it durable. The whole
 * medium is flushed whatever the range (a file has no cheaper partial flush). IMMED is
 * ignored: status is returned only after the flush, as qemu-storage-daemon does.
 * Write-through: every acknowledged write is already durable, so there is nothing to do.
 */
export function executeSynchronizeCache(core: Core, task: Task): number {
  if (!task.lu!.writeCache) return 0;
  return core.startFlush(task);
}

// ---- START STOP UNIT (SBC-3 r36 §5.25) ----

const SSU_START = 1;
const SSU_NO_FLUSH = 2;
/** POWER CONDITION ≠ 0h: START, LOEJ and NO_FLUSH are ignored and nothing is done */
const SSU_POWER = 4;

/** POWER CONDITION values (SBC-3 r36 §5.25 table 120). */
export const enum PowerCondition {
  START_VALID = 0x0,
  ACTIVE = 0x1,
  IDLE = 0x2,
  STANDBY = 0x3,
  LU_CONTROL = 0x7,
  FORCE_IDLE_0 = 0xa,
  FORCE_STANDBY_0 = 0xb,
}

export function parseStartStopUnit(task: Task, cdb: Uint8Array): void {
  // IMMED (byte 1 bit 0) is accepted and ignored: status follows any flush.
  const pc = cdb[4] >>> 4;
  const modifier = cdb[3] & 0x0f;
  switch (pc) {
    case PowerCondition.START_VALID:
      if (modifier !== 0) throw SenseError.invalidCdbField(3, 3);
      // LOEJ: the medium is not removable (RMB=0), there is nothing to load or eject.
      if ((cdb[4] & 0x02) !== 0) throw SenseError.invalidCdbField(4, 1);
      task.aux = ((cdb[4] & 0x01) !== 0 ? SSU_START : 0) | ((cdb[4] & 0x04) !== 0 ? SSU_NO_FLUSH : 0);
      break;
    case PowerCondition.ACTIVE:
    case PowerCondition.LU_CONTROL:
      // ACTIVE: we are always active. LU_CONTROL: power is the LU's own business, and it has
      // no lower power state to use. Both are true as no-ops. Neither takes a modifier.
      if (modifier !== 0) throw SenseError.invalidCdbField(3, 3);
      task.aux = SSU_POWER;
      break;
    default:
      // IDLE, STANDBY and the FORCE_*_0 conditions would need the Power Condition mode page
      // and low-power states we do not have; everything else is reserved.
      throw SenseError.invalidCdbField(4, 7);
  }
  task.dataLength = 0;
}

/**
 * START=1: the LU is always ready. START=0: there is no stopped state to enter (media access
 * keeps working, as with QEMU's scsi-disk), but with NO_FLUSH=0 cached data is made durable
 * first, as SBC-3 requires before stopping; this is what makes a guest shutdown safe.
 */
export function executeStartStopUnit(core: Core, task: Task): number {
  const lu = task.lu!;
  if ((task.aux & (SSU_START | SSU_NO_FLUSH | SSU_POWER)) !== 0 || !lu.writeCache) return 0;
  if (lu.failed !== null) throw new SenseError(Sense.WRITE_ERROR);
  return core.startFlush(task);
}
