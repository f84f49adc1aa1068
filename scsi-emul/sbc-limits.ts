// The SBC limits and provisioning values of a logical unit, decided in one place: VPD B0h/B2h
// and READ CAPACITY(16) report them, and the commands that honour them read the same object.
import type { BlockStore } from './store';
import type { BlockLimits, Provisioning } from './vpd';

/** Largest WRITE SAME and largest UNMAP (total of its descriptors), in bytes. */
export const MAX_WRITE_SAME_BYTES = 1 << 30;
export const MAX_UNMAP_BYTES = 1 << 30;
/**
 * UNMAP block descriptors per command: 256 × 16 + 8 bytes of parameter list. Linux sends one
 * descriptor per UNMAP; more help sg_unmap and VMware's batching. The CDB's 16-bit PARAMETER
 * LIST LENGTH would allow 4095.
 */
export const MAX_UNMAP_DESCRIPTORS = 256;
/** COMPARE AND WRITE buffers at most this much medium (each half of the data-out). */
export const MAX_COMPARE_AND_WRITE_BYTES = 256 << 10;
/** WRITE ATOMIC(16): one store write under an exclusive range lock. */
export const MAX_ATOMIC_BYTES = 1 << 20;
/** PRE-FETCH "cache": the host page cache, of which one command may fill this much. */
export const MAX_PREFETCH_BYTES = 32 << 20;

/** A store can deallocate when it implements BlockStore.deallocate (file and RAM stores do). */
export function storeIsThin(store: BlockStore, readOnly: boolean): boolean {
  return !readOnly && typeof store.deallocate === 'function';
}

/**
 * Fills lu.blockLimits and lu.provisioning (SBC-3 r36 §6.5.3 table 172, §6.5.4 table 178).
 *  - WSNZ=1: WRITE SAME with NUMBER OF LOGICAL BLOCKS 0 ("to the end of the medium") is
 *    rejected, since on a large LU it would exceed MAXIMUM WRITE SAME LENGTH anyway; Linux
 *    never sends it when WSNZ=1 (sd.c reads the bit).
 *  - MAXIMUM COMPARE AND WRITE LENGTH: as many blocks as fit 256 KiB, at most 255 (the field
 *    is one byte): 255 for 512-byte blocks, 64 for 4096. LIO reports 1; VMware ATS and
 *    sg_compare_and_write use 1, and a larger limit costs nothing but the private copy.
 *  - UNMAP: 1 GiB and 256 descriptors per command; OPTIMAL UNMAP GRANULARITY one 4 KiB file
 *    system block (smaller punches only zero, they free nothing), aligned at LBA 0 (UGAVALID=1).
 *  - Atomic writes (SBC-4 fields, bytes 44-63): 1 MiB, any alignment and length granularity,
 *    no atomic boundaries.
 *  - Provisioning: thin (LBPME=1, LBPU, LBPWS, LBPWS10, LBPRZ=1, type 010b) when the store can
 *    deallocate and the LU is writable; otherwise full (all zero, type 000b) — a read-only LU
 *    must not invite UNMAP (reliability.md §5.4).
 */
export function initSbcParameters(limits: BlockLimits, prov: Provisioning, blockSize: number, thin: boolean): void {
  limits.wsnz = true;
  limits.maxCompareAndWriteLength = Math.min(255, MAX_COMPARE_AND_WRITE_BYTES / blockSize);
  limits.maxPrefetchLength = MAX_PREFETCH_BYTES / blockSize;
  limits.maxWriteSameLength = MAX_WRITE_SAME_BYTES / blockSize;
  limits.maxAtomicTransferLength = MAX_ATOMIC_BYTES / blockSize;
  limits.atomicAlignment = 0;
  limits.atomicTransferLengthGranularity = 0;
  limits.maxAtomicTransferLengthWithAtomicBoundary = 0;
  limits.maxAtomicBoundarySize = 0;
  if (thin) {
    limits.maxUnmapLbaCount = MAX_UNMAP_BYTES / blockSize;
    limits.maxUnmapBlockDescriptorCount = MAX_UNMAP_DESCRIPTORS;
    limits.optimalUnmapGranularity = Math.max(1, 4096 / blockSize);
    limits.unmapGranularityAlignment = 0;
  } else {
    limits.maxUnmapLbaCount = 0;
    limits.maxUnmapBlockDescriptorCount = 0;
    limits.optimalUnmapGranularity = 0;
    limits.unmapGranularityAlignment = -1;
  }
  prov.lbpme = thin;
  prov.lbpu = thin;
  prov.lbpws = thin;
  prov.lbpws10 = thin;
  prov.lbprz = thin; // every store's deallocate leaves zeros (BlockStore.deallocate)
  prov.ancSup = false;
  prov.thresholdExponent = 0;
  prov.provisioningType = thin ? 0b010 : 0b000;
}
