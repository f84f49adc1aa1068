import t from 'tap';
import { Sense, SenseError, SenseKey, encodeSense, unitAttentionRank } from '../../scsi-emul';
import { hex, toHex } from './helpers';

t.test('named conditions carry the SPC-4 annex D key/ASC/ASCQ', (t) => {
  const expect: [keyof typeof Sense, number, number, number][] = [
    ['LBA_OUT_OF_RANGE', 0x5, 0x21, 0x00],
    ['INVALID_FIELD_IN_CDB', 0x5, 0x24, 0x00],
    ['INVALID_COMMAND_OPERATION_CODE', 0x5, 0x20, 0x00],
    ['LOGICAL_UNIT_NOT_SUPPORTED', 0x5, 0x25, 0x00],
    ['PARAMETER_LIST_LENGTH_ERROR', 0x5, 0x1a, 0x00],
    ['INVALID_FIELD_IN_PARAMETER_LIST', 0x5, 0x26, 0x00],
    ['SAVING_PARAMETERS_NOT_SUPPORTED', 0x5, 0x39, 0x00],
    ['WRITE_PROTECTED', 0x7, 0x27, 0x00],
    ['SPACE_ALLOCATION_FAILED_WRITE_PROTECT', 0x7, 0x27, 0x07],
    ['POWER_ON_RESET', 0x6, 0x29, 0x00],
    ['POWER_ON_OCCURRED', 0x6, 0x29, 0x01],
    ['BUS_DEVICE_RESET_FUNCTION_OCCURRED', 0x6, 0x29, 0x03],
    ['I_T_NEXUS_LOSS_OCCURRED', 0x6, 0x29, 0x07],
    ['MODE_PARAMETERS_CHANGED', 0x6, 0x2a, 0x01],
    ['CAPACITY_DATA_HAS_CHANGED', 0x6, 0x2a, 0x09],
    ['COMMANDS_CLEARED_BY_ANOTHER_INITIATOR', 0x6, 0x2f, 0x00],
    ['REPORTED_LUNS_DATA_HAS_CHANGED', 0x6, 0x3f, 0x0e],
    ['UNRECOVERED_READ_ERROR', 0x3, 0x11, 0x00],
    ['WRITE_ERROR', 0x3, 0x0c, 0x00],
    ['INTERNAL_TARGET_FAILURE', 0x4, 0x44, 0x00],
    ['LOGICAL_UNIT_COMMUNICATION_FAILURE', 0x4, 0x08, 0x00],
    ['LOGICAL_UNIT_NOT_ACCESSIBLE_TARGET_PORT_IN_STANDBY_STATE', 0x2, 0x04, 0x0b],
    ['MISCOMPARE_DURING_VERIFY_OPERATION', 0xe, 0x1d, 0x00],
    ['NO_ADDITIONAL_SENSE', 0x0, 0x00, 0x00],
  ];
  for (const [name, key, asc, ascq] of expect) {
    const c = Sense[name];
    t.same([c.key, c.asc, c.ascq], [key, asc, ascq], name);
    t.equal(c.name, name);
  }
  t.equal(SenseKey.ILLEGAL_REQUEST, 5);
  t.equal(SenseKey.UNIT_ATTENTION, 6);
  t.equal(SenseKey.DATA_PROTECT, 7);
  t.end();
});

t.test('fixed format (70h), SPC-4 §4.5.3', (t) => {
  const out = new Uint8Array(252).fill(0xaa);
  let n = encodeSense(out, false, Sense.INVALID_FIELD_IN_CDB, { inCdb: true, byte: 2 });
  t.equal(n, 18);
  t.equal(toHex(out.subarray(0, n)), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c0 00 02');

  n = encodeSense(out, false, Sense.INVALID_FIELD_IN_CDB, { inCdb: true, byte: 1, bit: 7 });
  t.equal(toHex(out.subarray(0, n)), '70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 cf 00 01',
    'SKSV | C/D | BPV | bit 7');

  n = encodeSense(out, false, Sense.INVALID_FIELD_IN_PARAMETER_LIST, { inCdb: false, byte: 0x102, bit: 0 });
  t.equal(toHex(out.subarray(0, n)), '70 00 05 00 00 00 00 0a 00 00 00 00 26 00 00 88 01 02',
    'C/D=0 for a parameter list, 16-bit field pointer');

  n = encodeSense(out, false, Sense.POWER_ON_RESET);
  t.equal(toHex(out.subarray(0, n)), '70 00 06 00 00 00 00 0a 00 00 00 00 29 00 00 00 00 00');

  n = encodeSense(out, false, Sense.UNRECOVERED_READ_ERROR, null, 0x12345678n);
  t.equal(toHex(out.subarray(0, n)), 'f0 00 03 12 34 56 78 0a 00 00 00 00 11 00 00 00 00 00', 'VALID + INFORMATION');

  n = encodeSense(out, false, Sense.UNRECOVERED_READ_ERROR, null, 0x1_0000_0000n);
  t.equal(toHex(out.subarray(0, n)), '70 00 03 00 00 00 00 0a 00 00 00 00 11 00 00 00 00 00',
    'an INFORMATION value wider than 4 bytes is not truncated into fixed format');
  t.equal(out[18], 0xaa, 'nothing past the sense data is touched');
  t.end();
});

t.test('descriptor format (72h), SPC-4 §4.5.2', (t) => {
  const out = new Uint8Array(252).fill(0xaa);
  let n = encodeSense(out, true, Sense.INVALID_FIELD_IN_CDB, { inCdb: true, byte: 2 });
  t.equal(toHex(out.subarray(0, n)), '72 05 24 00 00 00 00 08 02 06 00 00 c0 00 02 00');

  n = encodeSense(out, true, Sense.POWER_ON_RESET);
  t.equal(toHex(out.subarray(0, n)), '72 06 29 00 00 00 00 00');

  n = encodeSense(out, true, Sense.UNRECOVERED_READ_ERROR, null, 0x1_0000_0002n);
  t.equal(toHex(out.subarray(0, n)), '72 03 11 00 00 00 00 0c 00 0a 80 00 00 00 00 01 00 00 00 02');

  n = encodeSense(out, true, Sense.INVALID_FIELD_IN_CDB, { inCdb: true, byte: 4, bit: 1 }, 7n);
  t.same(out.subarray(0, n), hex('72 05 24 00 00 00 00 14 00 0a 80 00 00 00 00 00 00 00 00 07 02 06 00 00 c9 00 04 00'));
  t.end();
});

t.test('SenseError carries the condition and pointer, without a stack walk cost', (t) => {
  const e = SenseError.invalidCdbField(7);
  t.ok(e instanceof Error);
  t.equal(e.condition, Sense.INVALID_FIELD_IN_CDB);
  t.same(e.field, { inCdb: true, byte: 7, bit: undefined });
  const p = SenseError.invalidParameterField(3, 2);
  t.equal(p.condition, Sense.INVALID_FIELD_IN_PARAMETER_LIST);
  t.same(p.field, { inCdb: false, byte: 3, bit: 2 });
  t.end();
});

t.test('unit attention priority follows SAM-5 §5.14', (t) => {
  const order = [
    Sense.POWER_ON_RESET, Sense.POWER_ON_OCCURRED, Sense.BUS_DEVICE_RESET_FUNCTION_OCCURRED,
    Sense.I_T_NEXUS_LOSS_OCCURRED, Sense.MODE_PARAMETERS_CHANGED,
  ];
  for (let i = 1; i < order.length; i++) {
    t.ok(unitAttentionRank(order[i - 1]) < unitAttentionRank(order[i]), `${order[i - 1].name} before ${order[i].name}`);
  }
  t.equal(unitAttentionRank(Sense.CAPACITY_DATA_HAS_CHANGED), unitAttentionRank(Sense.REPORTED_LUNS_DATA_HAS_CHANGED),
    'the rest share the lowest rank (oldest first)');
  t.end();
});
