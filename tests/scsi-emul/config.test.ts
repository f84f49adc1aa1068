// Configuration surface: parseSize, LogicalUnit options and identity, ScsiTarget wiring.
import t from 'tap';
import {
  DEFAULT_NAA_OUI, LogicalUnit, ScsiTarget, createRamStore, parseSize, COMMANDS, lookupCommand, groupCdbLength,
} from '../../scsi-emul';
import { FakeBlockStore } from '../../scsi-emul/testing';

t.test('parseSize', (t) => {
  const ok: [string, number][] = [
    ['4096', 4096], ['512B', 512], ['512b', 512], ['1K', 1024], ['512M', 512 * 2 ** 20], ['4G', 4 * 2 ** 30],
    ['1T', 2 ** 40], ['2P', 2 * 2 ** 50], ['1.5G', 1.5 * 2 ** 30], ['0.5K', 512], [' 8M ', 8 * 2 ** 20], ['0', 0],
  ];
  for (const [s, v] of ok) t.equal(parseSize(s), v, s);
  for (const bad of ['', 'M', '-1', '1.3K', '0.1', '1e9', '4 G', '4GB', '4GiB', '0x100', '1.5.G', 'ten', '9P9',
    '99999999999999999999', '8E']) {
    t.throws(() => parseSize(bad), /invalid size/, JSON.stringify(bad));
  }
  t.throws(() => parseSize(42 as unknown as string), TypeError);
  t.end();
});

t.test('LogicalUnit options', (t) => {
  const lu = new LogicalUnit(createRamStore({ sizeBytes: 1 << 20, name: 'r' }));
  t.equal(lu.blockSize, 512);
  t.equal(lu.capacityBlocks, 2048n);
  t.equal(lu.writeCache, true, 'write-back by default');
  t.equal(lu.readOnly, false);
  t.equal(lu.name, 'r');
  t.equal(lu.identity.naaOui, DEFAULT_NAA_OUI);
  const lu4k = new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 }), { blockSize: 4096, writeCache: false, readOnly: true });
  t.equal(lu4k.capacityBlocks, 256n);
  t.equal(lu4k.writeCache, false);
  t.equal(lu4k.readOnly, true);
  t.throws(() => new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 }), { blockSize: 1024 as 512 }), /512 or 4096/);
  t.throws(() => new LogicalUnit(new FakeBlockStore({ sizeBytes: 4096 + 512 }), { blockSize: 4096 }), /multiple of the block size/);
  t.end();
});

t.test('identity validation', (t) => {
  const store = () => createRamStore({ sizeBytes: 1 << 20 });
  t.throws(() => new LogicalUnit(store(), { identity: { vendor: 'TOOLONGVENDOR' } }), /vendor/);
  t.throws(() => new LogicalUnit(store(), { identity: { product: 'x'.repeat(17) } }), /product/);
  t.throws(() => new LogicalUnit(store(), { identity: { revision: '12345' } }), /revision/);
  t.throws(() => new LogicalUnit(store(), { identity: { vendor: 'bad\n' } }), /printable/);
  t.throws(() => new LogicalUnit(store(), { identity: { serial: '' } }), /serial/);
  t.throws(() => new LogicalUnit(store(), { identity: { serial: 'é' } }), /serial/);
  t.throws(() => new LogicalUnit(store(), { identity: { naaOui: 0x1000000 } }), /naaOui/);
  const lu = new LogicalUnit(store(), { identity: { vendor: 'V', product: 'P', revision: 'R', serial: 'S' } });
  t.equal(lu.identity.vendor, 'V       ');
  t.equal(lu.identity.product, 'P               ');
  t.equal(lu.identity.revision, 'R   ');
  t.end();
});

t.test('ScsiTarget wiring', (t) => {
  const target = new ScsiTarget();
  const lu = new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 }));
  target.addLogicalUnit(16383, lu);
  t.equal(target.getLogicalUnit(16383), lu);
  t.equal(target.getLogicalUnit(0), undefined);
  t.equal(target.getLogicalUnit(-1), undefined);
  t.throws(() => target.addLogicalUnit(16384, new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 }))), /LUN/);
  t.throws(() => target.addLogicalUnit(1, lu), /already belongs/);
  t.throws(() => target.addLogicalUnit(16383, new LogicalUnit(createRamStore({ sizeBytes: 1 << 20 }))), /in use/);
  t.throws(() => new ScsiTarget({ maxTransferBytes: 100 }), /maxTransferBytes/);
  t.throws(() => target.nexusEstablished({ initiatorPort: 'x', targetPortId: 0 }), /targetPortId/);
  t.end();
});

t.test('one opcode table: every row is consistent', (t) => {
  const seen = new Set<string>();
  for (const d of COMMANDS) {
    const key = `${d.opcode}/${d.serviceAction}`;
    t.notOk(seen.has(key), `${d.name} listed once`);
    seen.add(key);
    t.equal(d.usage[0], d.opcode, `${d.name}: usage byte 0 is the opcode`);
    t.equal(d.cdbLength, groupCdbLength(d.opcode), `${d.name}: CDB length agrees with the opcode group`);
    t.equal(d.usage[d.cdbLength - 1], 0, `${d.name}: CONTROL byte bits all rejected (no NACA, no LINK)`);
    const cdb = new Uint8Array(d.cdbLength);
    cdb[0] = d.opcode;
    if (d.serviceAction >= 0) cdb[d.saByte] = d.serviceAction;
    t.equal(lookupCommand(cdb), d, `${d.name}: lookup finds the row`);
  }
  t.equal(COMMANDS.length, 62); // 19 of the skeleton + 25 of issue 3 + 16 reservations + 2 ALUA
  t.end();
});
