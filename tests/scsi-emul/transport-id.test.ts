// Port names and TransportIDs (SPC-4 r37 §7.6.4): literal TransportID bytes, and every malformed
// TransportID a guest can send answered with INVALID FIELD IN PARAMETER LIST at the right byte.
import t from 'tap';
import {
  ProtocolId, SenseError, canonicalPortName, decodeTransportId, encodeSense, encodeTransportId, portNameError,
  protocolOfPortName, transportIdLength,
} from '../../scsi-emul';
import { ascii, hex, toHex } from './helpers';

function encode(name: string): string {
  const b = new Uint8Array(300).fill(0xee); // stale bytes must not leak into the padding
  const n = encodeTransportId(name, b, 0);
  t.equal(n, transportIdLength(name), `${name}: transportIdLength agrees`);
  return toHex(b.subarray(0, n));
}

/** The fixed-format sense a decode error becomes. */
function decodeError(buf: Uint8Array, off = 0, avail = buf.length - off): string {
  try {
    decodeTransportId(buf, off, avail);
  } catch (e) {
    if (!(e instanceof SenseError)) throw e;
    const s = new Uint8Array(252);
    return toHex(s.subarray(0, encodeSense(s, false, e.condition, e.field, e.information)));
  }
  return 'no error';
}

/** INVALID FIELD IN PARAMETER LIST (05/26/00), C/D=0, at byte (and bit). */
function invalidParam(byte: number, bit?: number): string {
  const sks = 0x80 | (bit !== undefined ? 0x08 | bit : 0);
  return toHex(hex(`70 00 05 00 00 00 00 0a 00 00 00 00 26 00 00 ${sks.toString(16)} ${(byte >> 8).toString(16).padStart(2, '0')} ${(byte & 0xff).toString(16).padStart(2, '0')}`));
}

t.test('port names: valid forms and their protocols (SPC-4 table 362)', (t) => {
  t.equal(protocolOfPortName('naa.5001405a1b2c3d4e'), ProtocolId.SAS);
  t.equal(ProtocolId.SAS, 0x6);
  t.equal(protocolOfPortName('fc.21000024ff314c48'), 0x0);
  t.equal(protocolOfPortName('iqn.1994-05.com.redhat:client1'), 0x5);
  t.equal(protocolOfPortName('iqn.1994-05.com.redhat:client1,i,0x23d000000001'), 0x5);
  t.equal(protocolOfPortName('eui.0123456789abcdef'), 0x5);
  t.equal(protocolOfPortName('NAA.5001405A1B2C3D4E'), 0x6, 'case-insensitive');
  for (const n of ['naa.5001405a1b2c3d4e', 'fc.21000024ff314c48', 'iqn.1991-05.com.microsoft:node1.example.com', 'eui.0123456789ABCDEF']) {
    t.equal(portNameError(n), null, n);
  }
  t.equal(canonicalPortName('NAA.5001405A1B2C3D4E'), 'naa.5001405a1b2c3d4e');
  t.equal(canonicalPortName('iqn.1994-05.COM.Redhat:C1'), 'iqn.1994-05.com.redhat:c1');
  t.equal(canonicalPortName('Test-Initiator'), 'Test-Initiator', 'an opaque name stays as it is');
  t.end();
});

t.test('port names: invalid ones get a sentence saying what to write', (t) => {
  t.match(portNameError('naa.12'), /naa\. must be followed by exactly 16 hexadecimal digits/);
  t.match(portNameError('fc.21000024ff314c4'), /fc\. must be followed by exactly 16 hexadecimal digits.*N_Port_Name/);
  t.match(portNameError('iqn.bad'), /iqn\.yyyy-mm\.reversed\.domain/);
  t.match(portNameError('iqn.1994-13.com.x'), /not an iSCSI qualified name/, 'month 13');
  t.match(portNameError('iqn.1994-05.com.redhat:c1,i,0x12'), /,i,0x followed by exactly 12 hexadecimal digits/);
  t.match(portNameError('eui.12'), /eui\. must be followed by exactly 16 hexadecimal digits/);
  t.match(portNameError(''), /an initiator port name is required/);
  t.match(portNameError('test-initiator'), /not a port name this target understands: use naa\./);
  t.match(portNameError(`iqn.1994-05.com.x:${'a'.repeat(220)}`), /at most 223 characters/);
  t.equal(protocolOfPortName('naa.12'), null);
  t.end();
});

t.test('encode: SAS, FC, iSCSI formats 00b and 01b (SPC-4 §7.6.4)', (t) => {
  t.equal(encode('naa.5001405a1b2c3d4e'),
    '06 00 00 00 50 01 40 5a 1b 2c 3d 4e 00 00 00 00 00 00 00 00 00 00 00 00');
  t.equal(encode('NAA.5001405A1B2C3D4E'),
    '06 00 00 00 50 01 40 5a 1b 2c 3d 4e 00 00 00 00 00 00 00 00 00 00 00 00', 'upper case encodes the same');
  t.equal(encode('fc.21000024ff314c48'),
    '00 00 00 00 00 00 00 00 21 00 00 24 ff 31 4c 48 00 00 00 00 00 00 00 00');
  // 25 characters + NUL = 26, padded to 28 = ADDITIONAL LENGTH 1Ch.
  t.equal(encode('iqn.1994-05.com.redhat:c1'),
    `05 00 00 1c ${toHex(ascii('iqn.1994-05.com.redhat:c1'))} 00 00 00`);
  // 42 characters (name, ",i,0x", ISID) + NUL = 43, padded to 44 = 2Ch; FORMAT CODE 01b.
  t.equal(encode('iqn.1994-05.com.redhat:c1,i,0x23D000000001'),
    `45 00 00 2c ${toHex(ascii('iqn.1994-05.com.redhat:c1,i,0x23d000000001'))} 00 00`);
  // ADDITIONAL LENGTH is at least 20 (14h).
  t.equal(encode('iqn.2001-04.a.b'), `05 00 00 14 ${toHex(ascii('iqn.2001-04.a.b'))} 00 00 00 00 00`);
  t.end();
});

t.test('encode: names that are no port name fall back to an iSCSI TransportID, never throw', (t) => {
  t.equal(encode('test-initiator'), `05 00 00 14 ${toHex(ascii('test-initiator'))} 00 00 00 00 00 00`);
  t.equal(encode('a b,c\u00e9'), `05 00 00 14 ${toHex(ascii('a_b_c_'))} 00 00 00 00 00 00 00 00 00 00 00 00 00 00`,
    'spaces, commas and non-ASCII become _');
  t.equal(encode(''), '05 00 00 14 5f 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00', 'empty: "_"');
  const long = 'x'.repeat(1000);
  t.equal(transportIdLength(long), 4 + 224, 'cut to 223 characters');
  t.end();
});

t.test('decode: round trips at an offset, canonical names', (t) => {
  for (const n of ['naa.5001405a1b2c3d4e', 'fc.21000024ff314c48', 'iqn.1994-05.com.redhat:c1',
    'iqn.1994-05.com.redhat:c1,i,0x23d000000001', 'eui.0123456789abcdef', 'test-initiator']) {
    const b = new Uint8Array(8 + transportIdLength(n));
    const len = encodeTransportId(n, b, 8);
    t.same(decodeTransportId(b, 8, len), { name: n, length: len }, n);
  }
  const sas = hex('06 00 00 00 50 01 40 5A 1B 2C 3D 4E 00 00 00 00 00 00 00 00 00 00 00 00');
  t.same(decodeTransportId(sas, 0, 24), { name: 'naa.5001405a1b2c3d4e', length: 24 });
  const upper = Uint8Array.from([0x05, 0, 0, 0x14, ...ascii('IQN.2001-04.A.B'), 0, 0, 0, 0, 0]);
  t.same(decodeTransportId(upper, 0, 24), { name: 'iqn.2001-04.a.b', length: 24 }, 'iSCSI names fold to lower case');
  t.end();
});

t.test('decode: malformed or unsupported TransportIDs (guest-controlled) → 05/26/00 with a pointer', (t) => {
  const sas = (): Uint8Array => hex('06 00 00 00 50 01 40 5a 1b 2c 3d 4e 00 00 00 00 00 00 00 00 00 00 00 00');
  const iscsi = (s: string, len = 0x14, fmt = 0x05): Uint8Array => {
    const b = new Uint8Array(4 + len);
    b[0] = fmt;
    b[2] = len >> 8;
    b[3] = len & 0xff;
    b.set(ascii(s).subarray(0, len), 4);
    return b;
  };
  let b = sas();
  b[0] = 0x01; // SCSI Parallel Interface: no names for it
  t.equal(decodeError(b), invalidParam(0, 3), 'unsupported PROTOCOL IDENTIFIER');
  b = sas();
  b[0] = 0x46;
  t.equal(decodeError(b), invalidParam(0, 7), 'SAS with FORMAT CODE 01b');
  b = sas();
  b[0] = 0x16;
  t.equal(decodeError(b), invalidParam(0, 5), 'reserved bits 5-4 of byte 0');
  b = sas();
  b[2] = 1;
  t.equal(decodeError(b), invalidParam(2), 'SAS reserved byte 2');
  b = sas();
  b[20] = 1;
  t.equal(decodeError(b), invalidParam(20), 'SAS reserved byte 20');
  b = sas();
  b.fill(0, 4, 12);
  t.equal(decodeError(b), invalidParam(4), 'all-zero SAS address');
  t.equal(decodeError(sas(), 0, 23), invalidParam(0), 'truncated SAS TransportID');
  const fc = hex('00 00 00 00 00 00 00 00 21 00 00 24 ff 31 4c 48 00 00 00 00 00 00 00 01');
  t.equal(decodeError(fc), invalidParam(23), 'FC reserved byte 23');
  t.equal(decodeError(iscsi('iqn.2001-04.a.b', 0x10)), invalidParam(2), 'ADDITIONAL LENGTH below 20');
  t.equal(decodeError(iscsi('iqn.2001-04.a.b.cd', 0x16)), invalidParam(2), 'ADDITIONAL LENGTH not a multiple of 4');
  t.equal(decodeError(iscsi('iqn.2001-04.a.b'), 0, 20), invalidParam(2), 'ADDITIONAL LENGTH beyond the list');
  t.equal(decodeError(iscsi('iqn.2001-04.a.b.cdefgh')), invalidParam(4), 'no null terminator');
  t.equal(decodeError(iscsi('')), invalidParam(4), 'empty name');
  b = iscsi('iqn.2001-04.a.b');
  b[22] = 0x41;
  t.equal(decodeError(b), invalidParam(22), 'non-zero padding after the terminator');
  b = iscsi('iqn.2001-04.a b');
  t.equal(decodeError(b), invalidParam(17), 'a space in the name');
  t.equal(decodeError(iscsi('iqn.2001-04.a,b')), invalidParam(17), 'format 00b with a separator');
  t.equal(decodeError(iscsi('iqn.2001-04.a.b,i,0x12', 0x18, 0x45)), invalidParam(19), 'format 01b with a short ISID');
  t.equal(decodeError(iscsi('iqn.2001-04.a.b', 0x14, 0x45)), invalidParam(4), 'format 01b without a separator');
  t.equal(decodeError(iscsi('iqn.2001-04.a.b', 0x14, 0x85)), invalidParam(0, 7), 'FORMAT CODE 10b');
  t.equal(decodeError(iscsi('naa.5001405a1b2c3d4e', 0x18)), invalidParam(4), 'an iSCSI TransportID with a SAS-form name');
  const at = new Uint8Array(40);
  at.set(sas(), 16);
  at[16] = 0x0f;
  t.equal(decodeError(at, 16), invalidParam(16, 3), 'pointers count from the start of the parameter list');
  t.end();
});
