// Persistent reservation state on disk (reliability.md §4.7): one file per logical unit,
// `<dir>/<key>.pr`, written atomically, found again at start.
//
// Where: APTPL=1 state goes to the persistent directory (/var/lib/...: survives a power loss, as
// SPC-4 §5.9.5 wants); APTPL=0 state goes to the volatile directory (/run/...: tmpfs, survives a
// restart of this process, which is not a power loss, but not a reboot, which is). After a save
// is durable, the copy of the same LU in the other directory is removed and that removal made
// durable too, so a power loss cannot bring back registrations the last APTPL=0 said to drop.
//
// File format (all integers big-endian):
//   bytes  0-7   magic 89h 'V' 'S' 'T' 'S' 'P' 'R' 0Ah (the high byte and the newline catch text-mode
//                and truncating transfers, as PNG's signature does)
//   bytes  8-9   format version (1)
//   bytes 10-11  reserved (0)
//   bytes 12-15  payload length
//   bytes 16-47  SHA-256 of the payload
//   bytes 48-    payload: msgpack of { key, state } (state: PrSnapshot)
//
// A save: write a temporary file in the target directory (O_EXCL, 0600), fsync it, rename it over
// `<key>.pr`, fsync the directory, then remove the other directory's copy and fsync that
// directory. The reader only ever opens `<key>.pr`: a crash leaves either the old or the new
// file, never a partial one; leftover temporary files are removed at the next load. If both
// directories hold a copy (a crash between rename and removal), the larger save number wins.
// Anything wrong with a file (unreadable, short, bad magic, other version, checksum, decoding,
// content) is a PrStateError naming the file: the operator decides; state is never reset silently.
import * as fs from 'node:fs';
import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';
import { pack, unpack } from 'msgpackr';
import { validatePrSnapshot, type PrPersistence, type PrSnapshot } from '../scsi-emul';

export interface PrStoreDirs {
  /** APTPL=1 state: kept across power loss (e.g. /var/lib/vhost-scsi-ts) */
  persistentDir: string;
  /** APTPL=0 state: kept across restarts of the process only (e.g. /run/vhost-scsi-ts, a tmpfs) */
  volatileDir: string;
}

/** A state file that cannot be used; the message names the file and what is wrong. */
export class PrStateError extends Error {
  constructor(readonly file: string, problem: string) {
    super(`${file}: ${problem}`);
    this.name = 'PrStateError';
  }
}

const MAGIC = Buffer.from([0x89, 0x56, 0x53, 0x54, 0x53, 0x50, 0x52, 0x0a]);
const FORMAT_VERSION = 1;
const HEADER_LENGTH = 48;
/** Far above what MAX_REGISTRATIONS registrations take; a larger length field is damage. */
const MAX_PAYLOAD = 16 << 20;
const SUFFIX = '.pr';
const TEMP_INFIX = '.tmp-';

/**
 * The file name for `key`: letters, digits, '-', '_' and '.' stay (a leading '.' does not, so no
 * hidden or relative names); every other UTF-8 byte becomes %XX. Distinct keys give distinct
 * names. RangeError for keys whose name would be too long for a file system (255 bytes).
 */
export function prStateFileName(key: string): string {
  if (typeof key !== 'string' || key.length === 0) throw new RangeError('persistent reservation state: the key must be a non-empty string');
  let out = '';
  const bytes = Buffer.from(key, 'utf8');
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i];
    const safe = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) ||
      c === 0x2d || c === 0x5f || (c === 0x2e && i > 0);
    out += safe ? String.fromCharCode(c) : `%${c.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  // Room for the suffix and the temporary name's infix, pid and counter.
  if (out.length + SUFFIX.length + 32 > 255) {
    throw new RangeError(`persistent reservation state: the key ${JSON.stringify(key.slice(0, 40))}… is too long for a file name`);
  }
  return out + SUFFIX;
}

function encodeFile(key: string, state: PrSnapshot): Buffer {
  const payload = pack({ key, state });
  const header = Buffer.alloc(HEADER_LENGTH);
  MAGIC.copy(header, 0);
  header.writeUInt16BE(FORMAT_VERSION, 8);
  header.writeUInt32BE(payload.length, 12);
  createHash('sha256').update(payload).digest().copy(header, 16);
  return Buffer.concat([header, payload]);
}

function decodeFile(file: string, key: string, buf: Buffer): PrSnapshot {
  if (buf.length < HEADER_LENGTH) {
    throw new PrStateError(file, `truncated: ${buf.length} bytes, shorter than the ${HEADER_LENGTH}-byte header; restore it from a backup or remove it to start without these reservations`);
  }
  if (!buf.subarray(0, 8).equals(MAGIC)) {
    throw new PrStateError(file, 'not a persistent reservation state file (wrong magic number)');
  }
  const version = buf.readUInt16BE(8);
  if (version !== FORMAT_VERSION) {
    throw new PrStateError(file, `format version ${version}; this program reads version ${FORMAT_VERSION} (written by another version of vhost-scsi-ts?)`);
  }
  if (buf.readUInt16BE(10) !== 0) throw new PrStateError(file, 'damaged header (reserved bytes 10-11 are not zero)');
  const length = buf.readUInt32BE(12);
  if (length > MAX_PAYLOAD || HEADER_LENGTH + length !== buf.length) {
    throw new PrStateError(file, `damaged: the header announces ${length} payload bytes, the file has ${buf.length - HEADER_LENGTH}`);
  }
  const payload = buf.subarray(HEADER_LENGTH);
  if (!createHash('sha256').update(payload).digest().equals(buf.subarray(16, 48))) {
    throw new PrStateError(file, 'damaged: the SHA-256 checksum does not match the content; restore it from a backup or remove it to start without these reservations');
  }
  let doc: unknown;
  try {
    doc = unpack(payload);
  } catch (e) {
    throw new PrStateError(file, `damaged: the payload does not decode (${(e as Error).message})`);
  }
  if (doc === null || typeof doc !== 'object' || Object.getPrototypeOf(doc) !== Object.prototype) {
    throw new PrStateError(file, 'damaged: the payload is not a { key, state } record');
  }
  const d = doc as { key?: unknown; state?: unknown };
  if (d.key !== key) {
    throw new PrStateError(file, `holds the state of logical unit ${JSON.stringify(d.key)}, not of ${JSON.stringify(key)} (a copied or renamed file?)`);
  }
  const why = validatePrSnapshot(d.state);
  if (why !== null) throw new PrStateError(file, `invalid content: ${why}`);
  return d.state as PrSnapshot;
}

function readCopy(file: string, key: string): PrSnapshot | null {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw new PrStateError(file, `cannot be read (${code ?? 'error'}): ${(e as Error).message}`);
  }
  return decodeFile(file, key, buf);
}

/** Removes temporary files an interrupted save of `name` left in `dir` (never the state file itself). */
function removeStaleTemporaries(dir: string, name: string): void {
  let entries: string[];
  try {
    entries = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const e of entries) {
    if (e.startsWith(name + TEMP_INFIX)) {
      try {
        fs.unlinkSync(join(dir, e));
      } catch {
        // another process's file, or already gone: the name can never be read as state anyway
      }
    }
  }
}

/**
 * The saved state of logical unit `key`, or null when neither directory has any. Synchronous: it
 * runs once at start. Throws PrStateError for any file that exists but cannot be used.
 */
export function loadPrState(opts: PrStoreDirs, key: string): PrSnapshot | null {
  const name = prStateFileName(key);
  const persistentFile = join(opts.persistentDir, name);
  const volatileFile = join(opts.volatileDir, name);
  const same = resolve(opts.persistentDir) === resolve(opts.volatileDir);
  const p = readCopy(persistentFile, key);
  const v = same ? null : readCopy(volatileFile, key);
  removeStaleTemporaries(opts.persistentDir, name);
  if (!same) removeStaleTemporaries(opts.volatileDir, name);
  if (p === null || v === null) return p ?? v;
  if (p.seq === v.seq) {
    throw new PrStateError(persistentFile, `and ${volatileFile} both claim save number ${p.seq}; remove the one that is not current`);
  }
  return p.seq > v.seq ? p : v;
}

type Done = (err: Error | null) => void;

/** Flushes a directory's entries (a rename or unlink in it) to stable storage. */
function fsyncDir(dir: string, done: Done): void {
  fs.open(dir, 'r', (err, fd) => {
    if (err !== null) {
      done(err);
      return;
    }
    fs.fsync(fd, (syncErr) => fs.close(fd, (closeErr) => done(syncErr ?? closeErr ?? null)));
  });
}

function writeAll(fd: number, buf: Buffer, off: number, done: Done): void {
  fs.write(fd, buf, off, buf.length - off, off, (err, n) => {
    if (err !== null) done(err);
    else if (off + n < buf.length) writeAll(fd, buf, off + n, done);
    else done(null);
  });
}

/** Writes LU state files as the header of this file describes; see PrPersistence. */
export class FilePrPersistence implements PrPersistence {
  private readonly persistentDir: string;
  private readonly volatileDir: string;
  private readonly sameDir: boolean;
  private counter = 0;
  /** saves of the same key run one after another (the core never overlaps them; this makes sure) */
  private readonly queues = new Map<string, (() => void)[]>();

  constructor(opts: PrStoreDirs) {
    if (typeof opts?.persistentDir !== 'string' || opts.persistentDir === '' ||
        typeof opts.volatileDir !== 'string' || opts.volatileDir === '') {
      throw new TypeError('FilePrPersistence: persistentDir and volatileDir are required');
    }
    this.persistentDir = opts.persistentDir;
    this.volatileDir = opts.volatileDir;
    this.sameDir = resolve(opts.persistentDir) === resolve(opts.volatileDir);
  }

  save(key: string, state: PrSnapshot, done: Done): void {
    let name: string;
    let data: Buffer;
    try {
      name = prStateFileName(key);
      data = encodeFile(key, state);
    } catch (e) {
      process.nextTick(done, e as Error);
      return;
    }
    const start = (): void => this.write(name, state.aptpl, data, (err) => {
      const q = this.queues.get(key)!;
      q.shift();
      if (q.length > 0) q[0]();
      else this.queues.delete(key);
      done(err);
    });
    const q = this.queues.get(key);
    if (q !== undefined) {
      q.push(start);
      return;
    }
    this.queues.set(key, [start]);
    start();
  }

  private write(name: string, aptpl: boolean, data: Buffer, done: Done): void {
    const dir = aptpl ? this.persistentDir : this.volatileDir;
    const other = aptpl ? this.volatileDir : this.persistentDir;
    const file = join(dir, name);
    const temp = join(dir, `${name}${TEMP_INFIX}${process.pid}-${++this.counter}`);
    const fail = (err: Error, fd: number | null): void => {
      const cleanup = (): void => fs.unlink(temp, () => done(err));
      if (fd === null) cleanup();
      else fs.close(fd, cleanup);
    };
    fs.mkdir(dir, { recursive: true, mode: 0o700 }, (mkErr) => {
      if (mkErr !== null) {
        done(mkErr);
        return;
      }
      fs.open(temp, 'wx', 0o600, (openErr, fd) => {
        if (openErr !== null) {
          done(openErr);
          return;
        }
        writeAll(fd, data, 0, (wErr) => {
          if (wErr !== null) {
            fail(wErr, fd);
            return;
          }
          fs.fsync(fd, (syncErr) => {
            if (syncErr !== null) {
              fail(syncErr, fd);
              return;
            }
            fs.close(fd, (closeErr) => {
              if (closeErr !== null) {
                fail(closeErr, null);
                return;
              }
              fs.rename(temp, file, (renameErr) => {
                if (renameErr !== null) {
                  fail(renameErr, null);
                  return;
                }
                fsyncDir(dir, (dirErr) => {
                  if (dirErr !== null || this.sameDir) {
                    done(dirErr);
                    return;
                  }
                  this.removeStale(join(other, name), other, done);
                });
              });
            });
          });
        });
      });
    });
  }

  /** Removes the superseded copy in the other directory, durably. */
  private removeStale(file: string, dir: string, done: Done): void {
    fs.unlink(file, (err) => {
      if (err !== null) {
        done(err.code === 'ENOENT' || err.code === 'ENOTDIR' ? null : err);
        return;
      }
      fsyncDir(dir, done);
    });
  }
}
