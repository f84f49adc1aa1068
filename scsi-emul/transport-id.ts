// Initiator port names and SCSI TransportIDs (SPC-4 r37 §7.6.4).
//
// A port name is the string ITNexus.initiatorPort carries, in the form tcm_loop gives its ports:
//   naa.<16 hex digits>                      SAS address              → SAS, PROTOCOL IDENTIFIER 6h
//   fc.<16 hex digits>                       N_Port_Name              → Fibre Channel, 0h
//   iqn.yyyy-mm.<reversed domain>[:<id>]     iSCSI name (RFC 3720)    → iSCSI, 5h
//   eui.<16 hex digits>                      iSCSI EUI name
// An iSCSI initiator port may append ",i,0x<12 hex digits>", its ISID (SPC-4 §7.6.4.6 format 01b).
// Every form is case-insensitive (hex digits; RFC 3722 folds iSCSI names to lower case), so a
// name is compared in its canonical, lower-case form (canonicalPortName).
//
// A nexus whose initiator port is no such name (tests, a fabric without port names) still works
// for persistent reservations: its TransportID is an iSCSI one (format 00b) carrying the name with
// every byte outside 21h-7Eh, and every comma, replaced by '_', cut to 223 bytes ('_' if empty).
// READ FULL STATUS can always report it; only such a name that survives the replacement unchanged
// can be named back in SPEC_I_PT or REGISTER AND MOVE.
import { SenseError } from './sense';

/** SPC-4 r37 §7.6.1 table 362, PROTOCOL IDENTIFIER values of the transports we name. */
export const enum ProtocolId { FC = 0x0, ISCSI = 0x5, SAS = 0x6 }

/** RFC 3720 §3.2.6.1: an iSCSI name is at most 223 bytes. */
const ISCSI_NAME_MAX = 223;
/** ",i,0x" and 12 hex digits (SPC-4 §7.6.4, iSCSI format 01b: SEPARATOR and ISCSI INITIATOR SESSION ID). */
const ISID_SUFFIX_LENGTH = 17;
/** FC and SAS TransportIDs are 24 bytes (SPC-4 §7.6.4). */
const FIXED_TRANSPORT_ID_LENGTH = 24;
/** iSCSI ADDITIONAL LENGTH: a multiple of 4, at least 20 (SPC-4 §7.6.4.6). */
const ISCSI_MIN_ADDITIONAL_LENGTH = 20;

const HEX16 = /^[0-9a-f]{16}$/i;
const ISID = /,i,0x([0-9a-f]{12})$/i;
// RFC 3720 §3.2.6.3.1: "iqn." date "." reversed domain name [":" unique string]; RFC 3722 allows
// ASCII letters, digits, '-', '.' and ':' (we do not accept the non-ASCII part of stringprep).
const IQN = /^iqn\.[0-9]{4}-(?:0[1-9]|1[0-2])\.[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::[a-z0-9.:-]*)?$/i;
const EUI = /^eui\.[0-9a-f]{16}$/i;

const EXAMPLES = 'naa.<16 hex digits> (SAS), fc.<16 hex digits> (Fibre Channel), or an iSCSI name ' +
  '(iqn.yyyy-mm.reversed.domain[:identifier] or eui.<16 hex digits>, optionally followed by ,i,0x<12 hex digit ISID>)';

/** The protocol of a valid name, else null; `why` receives the reason when invalid. */
function classify(name: string, why: ((reason: string) => void) | null): ProtocolId | null {
  if (typeof name !== 'string' || name.length === 0) {
    why?.(`an initiator port name is required: ${EXAMPLES}`);
    return null;
  }
  const lower = name.toLowerCase();
  const shown = JSON.stringify(name.length > 80 ? `${name.slice(0, 80)}…` : name);
  if (lower.startsWith('naa.')) {
    if (HEX16.test(name.slice(4))) return ProtocolId.SAS;
    why?.(`${shown} is not a SAS port name: naa. must be followed by exactly 16 hexadecimal digits (the SAS address), e.g. naa.5001405a1b2c3d4e`);
    return null;
  }
  if (lower.startsWith('fc.')) {
    if (HEX16.test(name.slice(3))) return ProtocolId.FC;
    why?.(`${shown} is not a Fibre Channel port name: fc. must be followed by exactly 16 hexadecimal digits (the N_Port_Name), e.g. fc.21000024ff314c48`);
    return null;
  }
  if (lower.startsWith('iqn.') || lower.startsWith('eui.')) {
    let base = name;
    const comma = name.indexOf(',');
    if (comma >= 0) {
      if (!ISID.test(name) || name.length - comma !== ISID_SUFFIX_LENGTH) {
        why?.(`${shown}: an iSCSI initiator port's session id suffix must be ,i,0x followed by exactly 12 hexadecimal digits (the ISID), e.g. ,i,0x23d000000001`);
        return null;
      }
      base = name.slice(0, comma);
    }
    if (base.length > ISCSI_NAME_MAX) {
      why?.(`${shown} is too long for an iSCSI name: at most ${ISCSI_NAME_MAX} characters (RFC 3720)`);
      return null;
    }
    if (lower.startsWith('eui.') ? EUI.test(base) : IQN.test(base)) return ProtocolId.ISCSI;
    why?.(lower.startsWith('eui.')
      ? `${shown} is not an iSCSI EUI name: eui. must be followed by exactly 16 hexadecimal digits`
      : `${shown} is not an iSCSI qualified name: use iqn.yyyy-mm.reversed.domain[:identifier] with letters, digits, '-', '.' and ':' only (RFC 3720 §3.2.6.3.1), e.g. iqn.1994-05.com.redhat:client1`);
    return null;
  }
  why?.(`${shown} is not a port name this target understands: use ${EXAMPLES}`);
  return null;
}

/** Null when `name` is a valid initiator port name; otherwise a sentence saying what to write instead. */
export function portNameError(name: string): string | null {
  let reason: string | null = null;
  classify(name, (r) => { reason = r; });
  return reason;
}

/** The transport protocol a valid port name belongs to, or null when the name is not valid. */
export function protocolOfPortName(name: string): ProtocolId | null {
  return classify(name, null);
}

/**
 * The form names are compared in: lower case for valid names (every form is case-insensitive),
 * anything else unchanged (an opaque name matches only itself).
 */
export function canonicalPortName(name: string): string {
  return classify(name, null) !== null ? name.toLowerCase() : name;
}

/** The iSCSI name string (with any ISID suffix) a TransportID carries for `name`: valid or fallback. */
function iscsiString(name: string): string {
  if (classify(name, null) === ProtocolId.ISCSI) return name.toLowerCase();
  let s = '';
  for (let i = 0; i < name.length && s.length < ISCSI_NAME_MAX; i++) {
    const c = name.charCodeAt(i);
    s += c >= 0x21 && c <= 0x7e && c !== 0x2c ? name[i] : '_';
  }
  return s.length > 0 ? s : '_';
}

/** ADDITIONAL LENGTH of an iSCSI TransportID for a string of n bytes: NUL, padding to 4, at least 20. */
function iscsiAdditionalLength(n: number): number {
  return Math.max(ISCSI_MIN_ADDITIONAL_LENGTH, (n + 1 + 3) & ~3);
}

/** Bytes encodeTransportId writes for `name` (24 for FC and SAS, 24..248 for iSCSI). */
export function transportIdLength(name: string): number {
  const p = classify(name, null);
  if (p === ProtocolId.SAS || p === ProtocolId.FC) return FIXED_TRANSPORT_ID_LENGTH;
  return 4 + iscsiAdditionalLength(iscsiString(name).length);
}

function putHex64(out: Uint8Array, off: number, hex: string): void {
  for (let i = 0; i < 8; i++) out[off + i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
}

/**
 * Writes the TransportID of initiator port `name` at out[off] (SPC-4 r37 §7.6.4) and returns its
 * length (transportIdLength). FC: N_PORT_NAME in bytes 8-15; SAS: SAS ADDRESS in bytes 4-11; both
 * 24 bytes, format 00b. iSCSI: format 01b when the name carries an ISID, else 00b; ADDITIONAL
 * LENGTH in bytes 2-3; the null-terminated name, zero padded to a multiple of 4, at least 20.
 * Names that are none of these get the fallback described at the top of this file. Never throws.
 */
export function encodeTransportId(name: string, out: Uint8Array, off: number): number {
  const p = classify(name, null);
  if (p === ProtocolId.SAS || p === ProtocolId.FC) {
    out.fill(0, off, off + FIXED_TRANSPORT_ID_LENGTH);
    if (p === ProtocolId.SAS) {
      out[off] = ProtocolId.SAS; // FORMAT CODE 00b
      putHex64(out, off + 4, name.slice(4));
    } else {
      out[off] = ProtocolId.FC;
      putHex64(out, off + 8, name.slice(3));
    }
    return FIXED_TRANSPORT_ID_LENGTH;
  }
  const s = iscsiString(name);
  const additional = iscsiAdditionalLength(s.length);
  out.fill(0, off, off + 4 + additional);
  out[off] = (ISID.test(s) ? 0x40 : 0x00) | ProtocolId.ISCSI;
  out[off + 2] = additional >>> 8;
  out[off + 3] = additional & 0xff;
  for (let i = 0; i < s.length; i++) out[off + 4 + i] = s.charCodeAt(i);
  return 4 + additional;
}

function hex64(buf: Uint8Array, off: number): string {
  let s = '';
  for (let i = 0; i < 8; i++) s += buf[off + i].toString(16).padStart(2, '0');
  return s;
}

/** guest-controlled parameter data: every fault is INVALID FIELD IN PARAMETER LIST at its byte. */
function bad(byte: number, bit?: number): SenseError {
  return SenseError.invalidParameterField(byte, bit);
}

function checkZero(buf: Uint8Array, from: number, to: number): void {
  for (let i = from; i < to; i++) if (buf[i] !== 0) throw bad(i);
}

/**
 * Reads the TransportID at buf[off], of which `avail` bytes belong to the list being parsed
 * (guest-controlled: validated here). Returns the initiator port name (canonical) and the
 * TransportID's length. Unsupported protocols and formats, reserved bits, truncation, bad
 * padding and names we cannot hold throw INVALID FIELD IN PARAMETER LIST pointing at the field
 * (offsets in `buf`, which should be the whole parameter list).
 */
export function decodeTransportId(buf: Uint8Array, off: number, avail: number): { name: string; length: number } {
  if (avail < 4 || off + 4 > buf.length) throw bad(off);
  const b0 = buf[off];
  const format = b0 >>> 6;
  const protocol = b0 & 0x0f;
  if ((b0 & 0x30) !== 0) throw bad(off, 5); // reserved bits 5-4 of byte 0
  switch (protocol) {
    case ProtocolId.FC:
    case ProtocolId.SAS: {
      if (format !== 0) throw bad(off, 7);
      if (avail < FIXED_TRANSPORT_ID_LENGTH || off + FIXED_TRANSPORT_ID_LENGTH > buf.length) throw bad(off);
      // FC: bytes 1-7 and 16-23 reserved, N_PORT_NAME 8-15. SAS: bytes
      // 1-3 and 12-23 reserved, SAS ADDRESS 4-11.
      const at = protocol === ProtocolId.FC ? 8 : 4;
      checkZero(buf, off + 1, off + at);
      checkZero(buf, off + at + 8, off + FIXED_TRANSPORT_ID_LENGTH);
      const hex = hex64(buf, off + at);
      if (hex === '0000000000000000') throw bad(off + at); // no port has an all-zero name
      return { name: (protocol === ProtocolId.FC ? 'fc.' : 'naa.') + hex, length: FIXED_TRANSPORT_ID_LENGTH };
    }
    case ProtocolId.ISCSI: {
      if (format > 1) throw bad(off, 7);
      if (buf[off + 1] !== 0) throw bad(off + 1);
      const additional = (buf[off + 2] << 8) | buf[off + 3];
      if (additional < ISCSI_MIN_ADDITIONAL_LENGTH || additional % 4 !== 0 ||
          4 + additional > avail || off + 4 + additional > buf.length) {
        throw bad(off + 2);
      }
      const start = off + 4;
      const end = start + additional;
      let nul = start;
      while (nul < end && buf[nul] !== 0) nul++;
      if (nul === end || nul === start) throw bad(start); // not null terminated, or empty
      checkZero(buf, nul + 1, end); // zero padding (SPC-4 §4.4.2)
      let s = '';
      for (let i = start; i < nul; i++) {
        const c = buf[i];
        if (c < 0x21 || c > 0x7e) throw bad(i); // we hold ASCII names only
        s += String.fromCharCode(c);
      }
      const comma = s.indexOf(',');
      if (format === 0) {
        // 00b names the initiator device: no ISID, so no separator
        if (comma >= 0) throw bad(start + comma);
        if (s.length > ISCSI_NAME_MAX) throw bad(start);
      } else {
        // 01b: ISCSI NAME, SEPARATOR ",i,0x", ISCSI INITIATOR SESSION ID (12 hex digits)
        if (comma <= 0 || s.length - comma !== ISID_SUFFIX_LENGTH || !ISID.test(s)) throw bad(start + Math.max(comma, 0));
        if (comma > ISCSI_NAME_MAX) throw bad(start);
      }
      // A name our naming scheme would read as another transport's (naa.<16 hex> is SAS) cannot
      // be an iSCSI initiator port here.
      const p = classify(s, null);
      if (p !== null && p !== ProtocolId.ISCSI) throw bad(start);
      return { name: canonicalPortName(s), length: 4 + additional };
    }
    default:
      throw bad(off, 3); // PROTOCOL IDENTIFIER (bits 3-0): a transport we have no names for
  }
}
