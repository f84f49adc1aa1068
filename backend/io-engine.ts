// The target core's IoEngine on top of the addon: vectored I/O straight between the backing file
// and guest memory (no copy through JS buffers, never the libuv fs pool), either inline on the
// calling thread (files on tmpfs/ramfs, FileStoreOptions.io) or on the addon's own threads.

import type { IoEngine } from '../scsi-emul';
import { native } from './native';

const RWF_DSYNC = 1;

export const nativeIoEngine: IoEngine = {
  preadv(fd, iov, position, cb) {
    native.preadv(fd, iov, position, cb);
  },
  pwritev(fd, iov, position, dsync, cb) {
    native.pwritev(fd, iov, position, dsync ? RWF_DSYNC : 0, cb);
  },
  preadvSync(fd, iov, position) {
    return native.preadvSync(fd, iov, position);
  },
  pwritevSync(fd, iov, position, dsync) {
    return native.pwritevSync(fd, iov, position, dsync ? RWF_DSYNC : 0);
  },
  fdatasync(fd, cb) {
    native.fdatasync(fd, (err) => cb(err));
  },
  // fallocate is synchronous in the addon (a metadata operation); UNMAP is not a hot path.
  punchHole(fd, offset, len, cb) {
    try {
      native.punchHole(fd, offset, len);
    } catch (e) {
      cb(e as NodeJS.ErrnoException);
      return;
    }
    cb(null);
  },
  seekData(fd, offset, whence) {
    return native.lseekData(fd, offset, whence);
  },
};
