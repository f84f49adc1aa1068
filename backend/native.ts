// Typed facade over the native addon (backend/native/*.cc). This is the only
// module that loads the .node file; everything else imports `native` from
// here. The addon's surface and error conventions are in ./binding.d.ts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Binding, SystemError } from './binding';

export type { Binding, IoCallback, PeerCredentials, Poller, SystemError } from './binding';

const ADDON = 'vhost_scsi_native.node';

function loadBinding(): Binding {
  // Compiled to dist/backend/native.js (two levels below the repo root), or
  // run from backend/ directly by tools that execute TypeScript in place.
  const candidates = [
    path.join(__dirname, '..', '..', 'build', 'Release', ADDON),
    path.join(__dirname, '..', 'build', 'Release', ADDON),
  ];
  for (const file of candidates) {
    if (fs.existsSync(file)) {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      return require(file) as Binding;
    }
  }
  throw new Error(
    `vhost-scsi-ts: native addon not built (looked for ${candidates.join(', ')}); run \`npx node-gyp rebuild\``,
  );
}

export const native: Binding = loadBinding();

/** Narrow an unknown thrown value to a system error from the addon (or Node). */
export function isSystemError(e: unknown): e is SystemError {
  return (
    e instanceof Error &&
    typeof (e as Partial<SystemError>).code === 'string' &&
    typeof (e as Partial<SystemError>).errno === 'number' &&
    typeof (e as Partial<SystemError>).syscall === 'string'
  );
}
