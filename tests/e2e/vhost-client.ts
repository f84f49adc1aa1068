// A tiny vhost-user-scsi frontend for scripts (the e2e guests run it with node): it attaches to a
// backend socket as a fake QEMU + virtio-scsi driver (backend/virtio-scsi/fake-guest.ts) and runs
// one action, so a shell script can use the vhost-user path next to a kernel path.
//
//   node vhost-client.js SOCKET read LBA BLOCKS FILE      READ(16) into FILE
//   node vhost-client.js SOCKET write LBA FILE            WRITE(16) FILE's blocks
//   node vhost-client.js SOCKET register KEY              PR OUT REGISTER (and clears unit attentions)
//   node vhost-client.js SOCKET reserve KEY TYPE          PR OUT RESERVE
//   node vhost-client.js SOCKET release KEY TYPE          PR OUT RELEASE
//   node vhost-client.js SOCKET unregister KEY            PR OUT REGISTER with service action key 0
// Prints "status=0xNN" (and the sense key/ASC/ASCQ on CHECK CONDITION); exit 0 when GOOD.
import { readFileSync, writeFileSync } from 'node:fs';
import { FakeVirtioScsiGuest, type ScsiResult } from '../../backend/virtio-scsi/fake-guest';

const BLOCK = 512;

function be64(v: bigint): number[] {
  return Array.from({ length: 8 }, (_, i) => Number((v >> BigInt(56 - 8 * i)) & 0xffn));
}

function be32(v: number): number[] {
  return [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
}

async function settle(g: FakeVirtioScsiGuest): Promise<void> {
  // A new session starts with unit attentions (POWER ON/RESET, ...): consume them.
  for (let i = 0; i < 8; i++) if ((await g.command(0, [0x00, 0, 0, 0, 0, 0])).status === 0) return;
}

function prOut(g: FakeVirtioScsiGuest, sa: number, type: number, key: bigint, saKey: bigint): Promise<ScsiResult> {
  const p = new Uint8Array(24);
  p.set(be64(key), 0);
  p.set(be64(saKey), 8);
  return g.command(0, [0x5f, sa, type, 0, 0, 0, 0, 0, 24, 0], { dataOut: p });
}

async function main(argv: string[]): Promise<number> {
  const [socket, action, ...args] = argv;
  const g = await FakeVirtioScsiGuest.attach(socket);
  try {
    await settle(g);
    let r: ScsiResult;
    switch (action) {
      case 'read': {
        const [lba, blocks, file] = [Number(args[0]), Number(args[1]), args[2]];
        r = await g.command(0, [0x88, 0, ...be64(BigInt(lba)), ...be32(blocks), 0, 0], { dataIn: blocks * BLOCK });
        if (r.status === 0) writeFileSync(file, r.data.subarray(0, blocks * BLOCK));
        break;
      }
      case 'write': {
        const data = readFileSync(args[1]);
        const blocks = Math.ceil(data.length / BLOCK);
        const buf = new Uint8Array(blocks * BLOCK);
        buf.set(data);
        r = await g.command(0, [0x8a, 0x08, ...be64(BigInt(Number(args[0]))), ...be32(blocks), 0, 0], { dataOut: buf }); // FUA
        break;
      }
      case 'register': r = await prOut(g, 0x00, 0, 0n, BigInt(args[0])); break;
      case 'unregister': r = await prOut(g, 0x00, 0, BigInt(args[0]), 0n); break;
      case 'reserve': r = await prOut(g, 0x01, Number(args[1]), BigInt(args[0]), 0n); break;
      case 'release': r = await prOut(g, 0x02, Number(args[1]), BigInt(args[0]), 0n); break;
      default: throw new Error(`unknown action ${action}`);
    }
    const sense = r.status === 2 ? ` sense=${(r.sense[2] & 0xf).toString(16)}/${r.sense[12].toString(16)}/${r.sense[13].toString(16)}` : '';
    process.stdout.write(`${action}: status=0x${r.status.toString(16).padStart(2, '0')}${sense}\n`);
    return r.status === 0 ? 0 : 1;
  } finally {
    await g.detach();
  }
}

main(process.argv.slice(2)).then((code) => process.exit(code), (e) => {
  process.stderr.write(`vhost-client: ${(e as Error).message}\n`);
  process.exit(2);
});
