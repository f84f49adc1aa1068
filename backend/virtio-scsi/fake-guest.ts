// A fake guest for tests and benches: QEMU's side of the socket (FakeFrontend) plus a virtio-scsi
// driver on split rings in a shared memfd, sending SCSI commands and TMFs the way Linux's
// virtio_scsi does and waiting for their used elements on the call eventfd.
import { FakeGuestMemory, FakeSplitDriver } from '../../virtqueue';
import { native } from '../native';
import { FakeFrontend, FakeFrontendSocket, type FakeQueue } from '../vhost-user/fake-frontend';

const RAM = 4 << 20;
const GPA = 0x10_0000;
const UADDR = 0x7f12_3400_0000;
const QSIZE = 32;
/** virtio 1.2 §5.6.6.1: struct virtio_scsi_req_cmd with a 32-byte CDB */
const REQ_SIZE = 51;
/** struct virtio_scsi_resp_cmd with 96 bytes of sense */
export const RESP_SIZE = 108;

export interface ScsiResult {
  /** virtio_scsi response (0 = VIRTIO_SCSI_S_OK) */
  response: number;
  /** SCSI status */
  status: number;
  sense: Uint8Array;
  residual: number;
  data: Uint8Array;
}

export class FakeVirtioScsiGuest {
  private tag = 1n;

  private constructor(
    readonly sock: FakeFrontendSocket,
    readonly frontend: FakeFrontend,
    private readonly drivers: FakeSplitDriver[],
    private readonly queues: FakeQueue[],
    private readonly ram: { fd: number; bytes: Uint8Array },
  ) {}

  /** Connects to a backend socket and sets up the control, event and one request queue. */
  static async attach(socket: string): Promise<FakeVirtioScsiGuest> {
    const sock = FakeFrontendSocket.connect(socket);
    const ram = FakeFrontendSocket.createRam(RAM);
    const mem = new FakeGuestMemory([{ gpa: GPA, size: RAM, userAddr: UADDR, bytes: ram.bytes }]);
    const drivers: FakeSplitDriver[] = [];
    const queues: FakeQueue[] = [];
    for (let index = 0; index < 3; index++) {
      const d = new FakeSplitDriver(mem, QSIZE, { eventIdx: true, indirect: true });
      drivers.push(d);
      const c = d.config();
      queues.push({ index, size: QSIZE, desc: c.descTable, avail: c.availRing, used: c.usedRing, kickFd: FakeFrontendSocket.eventfd(), callFd: FakeFrontendSocket.eventfd() });
    }
    const fe = new FakeFrontend(sock);
    await fe.setupDevice({
      regions: [{ guestPhysAddr: BigInt(GPA), size: BigInt(RAM), userAddr: BigInt(UADDR), mmapOffset: 0n, fd: ram.fd }],
      queues,
    });
    return new FakeVirtioScsiGuest(sock, fe, drivers, queues, ram);
  }

  /** Offers a chain on queue q; resolves with the device-written bytes once it is used. */
  async request(q: number, readable: Uint8Array[], writable: number[], timeoutMs = 5000): Promise<{ len: number; data: Uint8Array }> {
    const d = this.drivers[q];
    const head = d.addChain(readable, writable, { kick: false });
    if (d.kick()) native.eventfdWrite(this.queues[q].kickFd, 1);
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const used = d.readUsed().find((u) => u.id === head);
      if (used) return { len: used.len, data: d.readWritable(head) };
      await new Promise((r) => setTimeout(r, 2));
    }
    throw new Error(`no completion on queue ${q} within ${timeoutMs} ms`);
  }

  /** One SCSI command to LUN `lun` (single-level LUN addressing, target 0). */
  async command(lun: number, cdb: ArrayLike<number>, opts: { dataOut?: Uint8Array; dataIn?: number } = {}): Promise<ScsiResult> {
    const req = new Uint8Array(REQ_SIZE);
    // virtio 1.2 §5.6.6.1: lun[0]=1, lun[1]=target, lun[2..3]=0x4000 | LUN (flat space addressing)
    req.set([1, 0, 0x40 | (lun >> 8), lun & 0xff], 0);
    new DataView(req.buffer).setBigUint64(8, this.tag++, true);
    req.set(Array.from(cdb), 19);
    const readable = opts.dataOut ? [req, opts.dataOut] : [req];
    const writable = opts.dataIn ? [RESP_SIZE, opts.dataIn] : [RESP_SIZE];
    const r = await this.request(2, readable, writable);
    const dv = new DataView(r.data.buffer, r.data.byteOffset);
    const senseLen = dv.getUint32(0, true);
    return {
      residual: dv.getUint32(4, true),
      status: r.data[10],
      response: r.data[11],
      sense: r.data.slice(12, 12 + Math.min(senseLen, 96)),
      data: r.data.slice(RESP_SIZE),
    };
  }

  /** A task management function on the control queue (virtio 1.2 §5.6.6.2); resolves with the response byte. */
  async tmf(subtype: number, lun: number, tag = 0n): Promise<number> {
    const req = new Uint8Array(24);
    const dv = new DataView(req.buffer);
    dv.setUint32(0, 0, true); // VIRTIO_SCSI_T_TMF
    dv.setUint32(4, subtype, true);
    req.set([1, 0, 0x40 | (lun >> 8), lun & 0xff], 8);
    dv.setBigUint64(16, tag, true);
    const r = await this.request(0, [req], [1]);
    return r.data[0];
  }

  /** Stops the rings like QEMU and closes everything. */
  async detach(): Promise<void> {
    try {
      await this.frontend.stopDevice([0, 1, 2]);
    } finally {
      this.close();
    }
  }

  close(): void {
    this.sock.close();
    native.munmap(this.ram.bytes.buffer as ArrayBuffer);
    native.close(this.ram.fd);
    for (const q of this.queues) {
      native.close(q.kickFd);
      native.close(q.callFd);
    }
    this.queues.length = 0;
  }
}
