// The vhost-user endpoint: a unix socket server that serves one frontend at a time (V1.7). It moves
// whole messages with their fds between the socket and a VhostUserSession; it knows sizes, not
// meanings. A bad frontend closes its own connection; the server keeps listening for the next one
// (a restarted QEMU).

import { lstatSync, statSync, unlinkSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Poller, SystemError } from './binding';
import { native } from './native';
import type { Logger } from './log';
import { ConfigError } from './config';
import { MessageAssembler } from './vhost-user/framing';
import { VhostUserSession, type HostOps } from './vhost-user/dispatcher';
import type { VirtioScsiDevice } from './virtio-scsi/device';

const RX_BUFFER = 64 * 1024;
const MAX_WAITING = 1;

export const nativeHostOps: HostOps = {
  mmap: (fd, offset, length) => new Uint8Array(native.mmap(fd, offset, length)),
  munmap: (bytes) => native.munmap(bytes.buffer as ArrayBuffer),
  fileSize: (fd) => native.fileSize(fd),
  closeFd: (fd) => native.close(fd),
};

export interface VhostUserServerOptions {
  socketPath: string;
  /** An inherited listening socket (vhost-user.rst --fd); -1 to create socketPath. */
  listenFd?: number;
  device: VirtioScsiDevice;
  log: Logger;
}

class Connection {
  private readonly poller: Poller;
  private readonly assembler = new MessageAssembler((fd) => native.close(fd));
  private readonly session: VhostUserSession;
  private readonly rx = new Uint8Array(RX_BUFFER);
  private readonly rxFds: number[] = [];
  private outbox: { bytes: Uint8Array; fds?: number[] }[] = [];
  private ending = false;

  constructor(
    readonly fd: number,
    private readonly server: VhostUserServer,
    private readonly log: Logger,
    device: VirtioScsiDevice,
  ) {
    this.session = new VhostUserSession(device, nativeHostOps, {
      send: (reply, fds) => this.send(reply, fds),
      close: (reason) => this.end(reason),
      log: (level, msg) => this.log.log(level, msg),
    });
    this.poller = native.createPoller(fd, (status, events) => this.onEvents(status, events));
    this.poller.start(1);
  }

  private onEvents(status: number, events: number): void {
    if (this.ending) return;
    if (status < 0) {
      this.end(`socket poll error ${status}`);
      return;
    }
    if (events & 2) this.flushOutbox();
    if (events & 1) this.onReadable();
  }

  private onReadable(): void {
    try {
      for (;;) {
        const n = native.recvmsg(this.fd, this.rx, 0, this.rx.length, this.rxFds);
        if (n < 0) return; // EAGAIN
        if (n === 0) {
          this.closeFds(this.rxFds);
          this.end('frontend closed the connection');
          return;
        }
        const fds = this.rxFds.splice(0);
        this.assembler.push(this.rx.subarray(0, n), fds);
        for (let msg = this.assembler.next(); msg !== null; msg = this.assembler.next()) {
          this.session.handle(msg);
          if (this.ending) return;
        }
      }
    } catch (err) {
      this.closeFds(this.rxFds);
      this.end(`${(err as Error).message}`);
    }
  }

  private closeFds(fds: number[]): void {
    for (const fd of fds.splice(0)) {
      try { native.close(fd); } catch { /* already gone */ }
    }
  }

  private send(bytes: Uint8Array, fds?: number[]): void {
    if (this.ending) return;
    this.outbox.push({ bytes, fds });
    this.flushOutbox();
  }

  private flushOutbox(): void {
    try {
      while (this.outbox.length > 0) {
        const m = this.outbox[0];
        const n = native.sendmsg(this.fd, m.bytes, 0, m.bytes.length, m.fds);
        if (n < 0) {
          this.poller.start(3); // wait until writable
          return;
        }
        if (n < m.bytes.length) {
          // fds went with the first byte; the rest is plain data.
          this.outbox[0] = { bytes: m.bytes.subarray(n) };
          continue;
        }
        this.outbox.shift();
      }
      this.poller.start(1);
    } catch (err) {
      this.end(`send failed: ${(err as SystemError).code ?? (err as Error).message}`);
    }
  }

  /** Tear the session down (rings stopped, memory unmapped, fds closed), then the socket. */
  end(reason: string, done?: () => void): void {
    if (this.ending) {
      if (done) this.server.onceIdle(done);
      return;
    }
    this.ending = true;
    this.log.info(`frontend disconnected: ${reason}`);
    this.poller.close();
    this.assembler.dispose(); // closes fds of a half-received message
    this.outbox = [];
    this.session.close(() => {
      try { native.close(this.fd); } catch { /* ignore */ }
      this.server.connectionEnded(this);
      done?.();
    });
  }
}

export class VhostUserServer {
  private listenFd: number;
  private listenPoller: Poller | null = null;
  private connection: Connection | null = null;
  private readonly waiting: number[] = [];
  private idleWaiters: (() => void)[] = [];
  private closing = false;
  private ownsPath = false;
  private readonly log: Logger;
  readonly socketPath: string;

  constructor(private readonly opts: VhostUserServerOptions) {
    this.listenFd = opts.listenFd ?? -1;
    this.socketPath = resolve(opts.socketPath);
    this.log = opts.log.child('vhost-user');
  }

  listen(): void {
    if (this.listenFd < 0) {
      this.prepareSocketPath();
      try {
        this.listenFd = native.listenUnix(this.socketPath, 4);
      } catch (e) {
        throw new ConfigError(`cannot listen on ${this.socketPath}: ${(e as SystemError).code ?? (e as Error).message}`);
      }
      this.ownsPath = true;
    }
    this.listenPoller = native.createPoller(this.listenFd, (status) => this.onAcceptable(status));
    this.listenPoller.start(1);
    this.log.info(`listening on ${this.socketPath}`);
  }

  /** reliability.md §5.1: never follow a symlink, only replace a stale socket, refuse unsafe directories. */
  private prepareSocketPath(): void {
    const dir = dirname(this.socketPath);
    let dst;
    try {
      dst = statSync(dir);
    } catch {
      throw new ConfigError(`socket directory ${dir} does not exist`);
    }
    if ((dst.mode & 0o022) !== 0 && (dst.mode & 0o1000) === 0) {
      throw new ConfigError(`socket directory ${dir} is group- or world-writable without the sticky bit; anyone could replace the socket`);
    }
    let st;
    try {
      st = lstatSync(this.socketPath);
    } catch {
      return; // does not exist: fine
    }
    if (!st.isSocket()) throw new ConfigError(`${this.socketPath} exists and is not a socket; refusing to replace it`);
    if (st.uid !== process.getuid!()) throw new ConfigError(`${this.socketPath} belongs to uid ${st.uid}; refusing to replace it`);
    let probe = -1;
    try {
      probe = native.connectUnix(this.socketPath);
    } catch {
      unlinkSync(this.socketPath); // nobody listens: a stale socket from a previous run
      return;
    }
    native.close(probe);
    throw new ConfigError(`${this.socketPath} is in use by another running backend`);
  }

  private onAcceptable(status: number): void {
    if (status < 0 || this.closing) return;
    for (;;) {
      let fd: number;
      try {
        fd = native.accept(this.listenFd);
      } catch (e) {
        this.log.warn(`accept: ${(e as SystemError).code ?? (e as Error).message}`);
        return;
      }
      if (fd < 0) return;
      if (this.connection === null) {
        this.startConnection(fd);
      } else if (this.waiting.length < MAX_WAITING) {
        // A restarted QEMU can connect while the old session is still draining: serve it next.
        this.waiting.push(fd);
      } else {
        this.log.warn('refusing an extra frontend connection: one frontend per socket');
        native.close(fd);
      }
    }
  }

  private startConnection(fd: number): void {
    try {
      const cred = native.peerCredentials(fd);
      this.log.info(`frontend connected (pid ${cred.pid}, uid ${cred.uid})`);
    } catch {
      this.log.info('frontend connected');
    }
    this.opts.device.connected();
    this.connection = new Connection(fd, this, this.log, this.opts.device);
  }

  /** Called by a Connection once its session is fully torn down. */
  connectionEnded(c: Connection): void {
    if (this.connection !== c) return;
    this.connection = null;
    this.opts.device.disconnect();
    const next = this.waiting.shift();
    if (next !== undefined && !this.closing) this.startConnection(next);
    else if (next !== undefined) native.close(next);
    if (this.connection === null) {
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const f of w) f();
    }
  }

  onceIdle(done: () => void): void {
    if (this.connection === null) done();
    else this.idleWaiters.push(done);
  }

  get connected(): boolean {
    return this.connection !== null;
  }

  /** Stop accepting, end the current session (draining its rings), remove the socket. */
  close(done: () => void): void {
    this.closing = true;
    this.listenPoller?.close();
    this.listenPoller = null;
    if (this.listenFd >= 0) {
      try { native.close(this.listenFd); } catch { /* ignore */ }
      this.listenFd = -1;
    }
    if (this.ownsPath) {
      try { unlinkSync(this.socketPath); } catch { /* already gone */ }
      this.ownsPath = false;
    }
    for (const fd of this.waiting.splice(0)) native.close(fd);
    if (this.connection) this.connection.end('backend shutting down', done);
    else done();
  }
}
