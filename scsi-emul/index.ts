// Public surface of scsi-emul, the fabric-independent SCSI target core. Fabrics (the
// virtio-scsi adapter, the TCMU path) use only what is exported here.
export {
  ScsiStatus, ServiceResponse, TaskAttribute, TaskManagementFunction, TmfResponse, SenseKey, Opcode,
  ServiceActionIn16, MaintenanceIn, DataDirection, MAX_CDB_LENGTH, MAX_SENSE_LENGTH, MAX_LUN, REPORT_LUNS_WLUN,
} from './constants';
export { ScsiCommand } from './command';
export type { ITNexus } from './command';
export { LogicalUnit, DEFAULT_VENDOR, DEFAULT_PRODUCT, DEFAULT_REVISION, DEFAULT_NAA_OUI } from './logical-unit';
export type { LogicalUnitIdentity, LogicalUnitOptions, ResolvedIdentity } from './logical-unit';
export { ScsiTarget, DEFAULT_MAX_TRANSFER_BYTES } from './target';
export type { ScsiTargetOptions } from './target';
export { Sense, SenseError, encodeSense, unitAttentionRank, FIXED_SENSE_LENGTH } from './sense';
export type { SenseCondition, SenseName, FieldPointer } from './sense';
export { COMMANDS, lookupCommand, groupCdbLength } from './opcodes';
export type { CommandDef } from './opcodes';
export { nodeFsIoEngine } from './store';
export type { BlockStore, IoEngine, StoreExtent } from './store';
export { createRamStore, jsByteCopier, RamStore, RAM_CHUNK_SIZE } from './ram-store';
export type { ByteCopier } from './ram-store';
export { createFileStore, openFileStore, FileStore } from './file-store';
export type { FileStoreIo, FileStoreOptions } from './file-store';
export { parseSize } from './size';
export type { BlockLimits, Provisioning } from './vpd';
export {
  AluaState, TargetPortGroupStatus, aluaStateName, parseAluaState, DEFAULT_IMPLICIT_TRANSITION_SECONDS,
  UNCONFIGURED_PORTS_GROUP,
} from './alua';
export type { TargetPortGroupConfig, AluaOptions, TargetPortGroupInfo } from './alua';
export {
  ProtocolId, portNameError, protocolOfPortName, canonicalPortName, encodeTransportId, decodeTransportId,
  transportIdLength,
} from './transport-id';
export {
  PrType, PrScope, PrInServiceAction, PrOutServiceAction, PR_SNAPSHOT_VERSION, MAX_REGISTRATIONS, validatePrSnapshot,
} from './persistent-reservations';
export type {
  PrPersistence, PrSnapshot, PrRegistrationSnapshot, PrReservationSnapshot, PersistentReservationsOptions,
} from './persistent-reservations';
