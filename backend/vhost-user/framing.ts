// Message framing (DESIGN.md "Layers inside backend/" 1): bytes and fds in, whole messages
// out. Knows the header and sizes, not meanings. Sans-IO: the endpoint feeds what recvmsg
// returned; closing fds goes through the injected closeFd so that no fd is ever dropped on
// the floor (V1.5, V1.6).
//
// vhost-user.rst "Message Specification": a 12-byte header {u32 request, u32 flags,
// u32 size} in the machine's native byte order, then `size` payload bytes.

import { ProtocolError } from './errors';
import {
  MAX_FDS_PER_MESSAGE,
  MAX_PAYLOAD,
  VHOST_USER_HDR_SIZE,
  VHOST_USER_REPLY_MASK,
  VHOST_USER_VERSION,
} from './protocol';

/** "All numbers are in the machine native byte order." */
export const NATIVE_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export interface VhostUserMessage {
  request: number;
  flags: number;
  /** A private copy: the caller may keep it. */
  payload: Uint8Array;
  /** fds that arrived with the message; the receiver owns them from now on. */
  fds: number[];
}

export interface MessageAssemblerOptions {
  /** Largest payload accepted (V1.4). Default MAX_PAYLOAD (268). */
  maxPayload?: number;
  /** Most fds accepted with one message (V8.1). Default 8. */
  maxFds?: number;
}

const EMPTY = new Uint8Array(0);

/**
 * Reassembles vhost-user messages from a SOCK_STREAM. Which message do fds belong to?
 * Linux unix_stream_read_generic() ends a recvmsg right after the skb that carried
 * SCM_RIGHTS, and a front-end sends a message with its fds in one sendmsg, so the fds of
 * one recvmsg belong to the last message that starts in that chunk. A chunk with fds in
 * which no message starts (only the continuation of an earlier one) is a protocol error
 * (V1.1: fds arrive with the first recvmsg of a message).
 *
 * After a ProtocolError the assembler is broken: it has closed every fd it held and
 * refuses further input (the connection must be dropped).
 */
export class MessageAssembler {
  private readonly maxPayload: number;
  private readonly maxFds: number;
  private readonly header = new Uint8Array(VHOST_USER_HDR_SIZE);
  private readonly headerView = new DataView(this.header.buffer);
  private headerFill = 0;
  private request = 0;
  private flags = 0;
  private payload: Uint8Array = EMPTY;
  private payloadFill = 0;
  /** fds of the message being assembled (it started in an earlier chunk). */
  private fds: number[] = [];
  private readonly ready: VhostUserMessage[] = [];
  private readyHead = 0;
  private broken: ProtocolError | null = null;

  constructor(
    private readonly closeFd: (fd: number) => void,
    options: MessageAssemblerOptions = {},
  ) {
    this.maxPayload = options.maxPayload ?? MAX_PAYLOAD;
    this.maxFds = options.maxFds ?? MAX_FDS_PER_MESSAGE;
  }

  /** Bytes of a message received so far but not complete (0 at a message boundary). */
  get pendingBytes(): number {
    return this.headerFill + this.payloadFill;
  }

  /**
   * Feed the bytes and fds of one recvmsg. Complete messages become available through
   * next(), in order. Throws ProtocolError on a framing error, after closing every fd the
   * assembler held (including those of this call and of messages not yet taken).
   */
  push(chunk: Uint8Array, fds: readonly number[] = []): void {
    if (this.broken) {
      this.closeAll(fds);
      throw this.broken;
    }
    let chunkFds: readonly number[] | null = fds.length > 0 ? fds : null;
    // True while the message being assembled began in this chunk.
    let startedHere = false;
    let off = 0;
    try {
      if (chunkFds && chunk.length === 0) {
        throw new ProtocolError(0, `${fds.length} fd(s) received without message bytes`);
      }
      if (chunkFds && chunkFds.length > this.maxFds) {
        throw new ProtocolError(0, `${chunkFds.length} fds in one message, at most ${this.maxFds} accepted`);
      }
      while (off < chunk.length) {
        if (this.headerFill < VHOST_USER_HDR_SIZE) {
          if (this.headerFill === 0) startedHere = true;
          const n = Math.min(VHOST_USER_HDR_SIZE - this.headerFill, chunk.length - off);
          this.header.set(chunk.subarray(off, off + n), this.headerFill);
          this.headerFill += n;
          off += n;
          if (this.headerFill < VHOST_USER_HDR_SIZE) break;
          this.request = this.headerView.getUint32(0, NATIVE_LITTLE_ENDIAN);
          this.flags = this.headerView.getUint32(4, NATIVE_LITTLE_ENDIAN);
          const size = this.headerView.getUint32(8, NATIVE_LITTLE_ENDIAN);
          // front-end-controlled: validated here, before anything is allocated (V1.4).
          if (size > this.maxPayload) {
            throw new ProtocolError(this.request, `payload size ${size} exceeds the largest accepted (${this.maxPayload})`);
          }
          this.payload = size === 0 ? EMPTY : new Uint8Array(size);
          this.payloadFill = 0;
        }
        const want = this.payload.length - this.payloadFill;
        if (want > 0) {
          const n = Math.min(want, chunk.length - off);
          this.payload.set(chunk.subarray(off, off + n), this.payloadFill);
          this.payloadFill += n;
          off += n;
          if (this.payloadFill < this.payload.length) break;
        }
        // Complete. The chunk's fds go to the last message that starts in it: this one
        // only if it started here and nothing follows it in the chunk.
        let msgFds = this.fds;
        if (startedHere && off === chunk.length && chunkFds) {
          msgFds = chunkFds.slice();
          chunkFds = null;
        }
        this.ready.push({ request: this.request, flags: this.flags, payload: this.payload, fds: msgFds });
        this.fds = [];
        this.headerFill = 0;
        this.payload = EMPTY;
        this.payloadFill = 0;
        startedHere = false;
      }
      if (chunkFds) {
        if (!startedHere) {
          throw new ProtocolError(this.request, 'fds arrived on a chunk that does not start a message');
        }
        this.fds = chunkFds.slice();
        chunkFds = null;
      }
    } catch (err) {
      this.fail(err as ProtocolError, chunkFds ?? []);
      throw err;
    }
  }

  /** The next complete message, or null. The caller owns its fds. */
  next(): VhostUserMessage | null {
    if (this.readyHead === this.ready.length) return null;
    const m = this.ready[this.readyHead++];
    if (this.readyHead === this.ready.length) {
      this.ready.length = 0;
      this.readyHead = 0;
    }
    return m;
  }

  /** End of stream or connection drop: close the fds of everything not taken. Idempotent. */
  dispose(): void {
    if (!this.broken) this.fail(new ProtocolError(0, 'assembler disposed'), []);
  }

  private fail(err: ProtocolError, extra: readonly number[]): void {
    this.broken = err;
    this.closeAll(extra);
    this.closeAll(this.fds);
    this.fds = [];
    for (let i = this.readyHead; i < this.ready.length; i++) this.closeAll(this.ready[i].fds);
    this.ready.length = 0;
    this.readyHead = 0;
    this.headerFill = 0;
    this.payload = EMPTY;
    this.payloadFill = 0;
  }

  private closeAll(fds: readonly number[]): void {
    for (const fd of fds) {
      try {
        this.closeFd(fd);
      } catch {
        // Already closed or never valid: nothing more to release.
      }
    }
  }
}

/** Write a 12-byte header into `out` at `offset`. */
export function writeHeader(out: Uint8Array, offset: number, request: number, flags: number, size: number): void {
  const v = new DataView(out.buffer, out.byteOffset + offset, VHOST_USER_HDR_SIZE);
  v.setUint32(0, request >>> 0, NATIVE_LITTLE_ENDIAN);
  v.setUint32(4, flags >>> 0, NATIVE_LITTLE_ENDIAN);
  v.setUint32(8, size >>> 0, NATIVE_LITTLE_ENDIAN);
}

/** One whole message: header followed by the payload. */
export function encodeMessage(request: number, flags: number, payload: Uint8Array = EMPTY, size = payload.length): Uint8Array {
  const out = new Uint8Array(VHOST_USER_HDR_SIZE + payload.length);
  writeHeader(out, 0, request, flags, size);
  out.set(payload, VHOST_USER_HDR_SIZE);
  return out;
}

/**
 * A back-end reply: the request code echoed, flags = version 1 | REPLY (0x5). QEMU's
 * vhost_user_read_header() rejects any other flags value, NEED_REPLY included.
 */
export function encodeReply(request: number, payload: Uint8Array = EMPTY): Uint8Array {
  return encodeMessage(request, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK, payload);
}
