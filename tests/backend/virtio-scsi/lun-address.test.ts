// virtio-scsi LUN field decoding (virtio 1.2 §5.6.6.1, SAM-5 §4.7), including the REPORT LUNS
// well known LU (C1 01), which reaches the core as REPORT_LUNS_WLUN.
import t from 'tap';
import { REPORT_LUNS_WLUN } from '../../../scsi-emul';
import { decodeLunField } from '../../../backend/virtio-scsi/lun-address';

const field = (...b: number[]) => Uint8Array.from(b);

t.test('single level LUNs and the REPORT LUNS W-LUN', (t) => {
  t.equal(decodeLunField(field(1, 0, 0x40, 0x05, 0, 0, 0, 0), 0), 5, 'flat');
  t.equal(decodeLunField(field(1, 0, 0x00, 0x05, 0, 0, 0, 0), 0), 5, 'peripheral');
  t.equal(decodeLunField(field(1, 0, 0x7f, 0xff, 0, 0, 0, 0), 0), 16383);
  t.equal(decodeLunField(field(1, 0, 0xc1, 0x01, 0, 0, 0, 0), 0), REPORT_LUNS_WLUN, 'C1 01 → C101h');
  t.equal(REPORT_LUNS_WLUN, 0xc101);
  t.equal(decodeLunField(field(9, 9, 1, 0, 0xc1, 0x01, 0, 0, 0, 0), 2), REPORT_LUNS_WLUN, 'at an offset');
  t.end();
});

t.test('other extended addresses and malformed fields are rejected', (t) => {
  t.equal(decodeLunField(field(1, 0, 0xc1, 0x02, 0, 0, 0, 0), 0), -1, 'another well known LUN');
  t.equal(decodeLunField(field(1, 0, 0xc0, 0x01, 0, 0, 0, 0), 0), -1);
  t.equal(decodeLunField(field(1, 0, 0xc2, 0x01, 0, 0, 0, 0), 0), -1);
  t.equal(decodeLunField(field(1, 0, 0xc1, 0x01, 0, 0, 0, 1), 0), -1, 'bytes 4-7 must be zero');
  t.equal(decodeLunField(field(1, 1, 0xc1, 0x01, 0, 0, 0, 0), 0), -1, 'target 1');
  t.equal(decodeLunField(field(1, 0, 0x80, 0x01, 0, 0, 0, 0), 0), -1, 'logical unit addressing');
  t.end();
});
