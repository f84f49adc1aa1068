#!/usr/bin/env node
// vhost-scsi-ts command line. A wrong argument or config is one clear line on stderr and exit 2;
// a failure to start is exit 1 (vhost-user.rst "Backend program conventions": fail early, != 0).

import { resolve } from 'node:path';
import {
  ConfigError, finishConfig, loadConfigFile, parseHostLunSpec, parseLunSpec, parsePollUs, parsePortSpec, parseQueues, parseTpgSpec,
  type HostLunSpec, type PartialConfig, type PortConfig, type PortSpec, type ServeConfig, type TargetPortGroupEntry,
} from './config';
import { isLogLevel, Logger } from './log';
import { startBackend, type Backend } from './app';
import { hostCommand } from './host-cli';

const USAGE = `usage: vhost-scsi-ts serve --socket PATH --lun SPEC [--lun SPEC ...] [options]
       vhost-scsi-ts host list [--json]

Serve SCSI logical units to QEMU over a vhost-user-scsi socket.

  --socket PATH, --socket-path PATH  unix socket to create (mode 0600)
  --port socket=PATH[,id=N][,wwn=NAME][,initiator=NAME][,group=N][,queues=N]
                              one more socket serving the same LUNs: a second virtio-scsi
                              controller and SCSI target port (shared disks, multipath).
                                id:        relative target port id (default: the next free)
                                wwn:       target port name; its prefix picks the protocol as in
                                           tcm_loop: naa.<16 hex> SAS, fc.<16 hex> FC, iqn./eui. iSCSI
                                           (default naa. derived from the socket path)
                                initiator: the frontend's initiator port name, same prefix as wwn;
                                           reservations key on it (default derived from the path)
                                group:     ALUA target port group (default 1)
  --host-lun LUN[,wwn=NAME][,initiator=NAME][,id=N][,group=N]
                              expose LUN on this host too: a TCMU backstore served by this
                              process behind a tcm_loop port (needs configfs, target_core_user
                              and tcm_loop); the host sees /dev/sdX. wwn picks SAS/FC/iSCSI as
                              --port's; initiator is the tcm_loop nexus. See: vhost-scsi-ts host list
  --tpg ID:STATE[:preferred]  ALUA target port group and its access state: active-optimized,
                              active-non-optimized, standby or unavailable (SIGHUP re-reads
                              "targetPortGroups" from --config and applies state changes)
  --state-dir DIR             persistent reservations with APTPL (default /var/lib/vhost-scsi-ts
                              as root, else ~/.local/state/vhost-scsi-ts)
  --run-dir DIR               the other reservation state: survives a backend restart, not a
                              reboot (default /run/vhost-scsi-ts as root, else $XDG_RUNTIME_DIR)
  --fd N                      serve on an inherited listening socket instead
  --lun LUN:BACKSTORE[:k=v,...]
                              LUN 0..16383; BACKSTORE ram or file
                                ram:  size=1G
                                file: path=IMG[,size=4G (creates a sparse image if absent)]
                                      [,readonly][,direct][,io=auto|inline|threads|uring]
                                      io: where reads and writes run (auto: inline for
                                      tmpfs/ramfs files, else io_uring, else addon threads)
                                both: [,block-size=512|4096][,write-cache=on|off]
                                      [,vendor=..][,product=..][,revision=..][,serial=..]
  --config FILE               JSON file with the same model:
                                {"socket": "...", "queues": 1, "logLevel": "info",
                                 "luns": [{"lun": 0, "backstore": "file", "path": "disk.img", "size": "4G"}],
                                 "ports": [{"socket": "b.sock", "group": 2}],
                                 "targetPortGroups": [{"id": 1, "state": "active-optimized"},
                                                      {"id": 2, "state": "standby"}]}
                              SIGHUP re-reads it and applies its LUN changes live: a LUN added
                              or removed (the guest rescans), a larger "size" (the image grows;
                              the guest sees the new capacity). Shrinking and changing anything
                              else of a live LUN are refused and logged; --lun LUNs stay as given.
  --queues N                  request queues (1..64, default 1); pass the same num_queues to QEMU
  --poll-us N                 after draining a request queue, keep polling it N µs (0..1000,
                              default 0) before sleeping on the kick: saves a wakeup per batch
                              when the guest submits again within N µs, at the cost of CPU
  --initiator-id NAME         initiator port name of the --socket frontend (see --port initiator)
  --log-level LEVEL           debug, info, warn, error, silent (default info)
  --print-qemu-args           print the QEMU arguments that attach this socket and exit
  --print-capabilities        print the vhost-user backend capabilities (JSON) and exit
  -h, --help                  this text
`;

interface Parsed {
  config: ServeConfig;
  listenFd: number;
  printQemuArgs: boolean;
}

function takeValue(args: string[], i: number, flag: string): string {
  const v = args[i + 1];
  if (v === undefined || (v.startsWith('--') && v.length > 2)) throw new ConfigError(`${flag} needs a value`);
  return v;
}

export function parseServeArgs(args: string[]): Parsed {
  const partial: PartialConfig = {};
  const cliLuns = [];
  const cliPorts: PortSpec[] = [];
  const cliGroups: TargetPortGroupEntry[] = [];
  const cliHost: HostLunSpec[] = [];
  let configFile: string | undefined;
  let listenFd = -1;
  let printQemuArgs = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const eq = a.startsWith('--') ? a.indexOf('=') : -1;
    const flag = eq > 0 ? a.slice(0, eq) : a;
    const inline = eq > 0 ? a.slice(eq + 1) : undefined;
    const value = (): string => {
      if (inline !== undefined) return inline;
      const v = takeValue(args, i, flag);
      i++;
      return v;
    };
    switch (flag) {
      case '--socket': case '--socket-path': {
        const v = value();
        if (partial.socket === undefined) partial.socket = v;
        else cliPorts.push({ socket: v });
        break;
      }
      case '--port': cliPorts.push(parsePortSpec(value())); break;
      case '--tpg': cliGroups.push(parseTpgSpec(value())); break;
      case '--host-lun': cliHost.push(parseHostLunSpec(value())); break;
      case '--state-dir': partial.stateDir = value(); break;
      case '--run-dir': partial.runDir = value(); break;
      case '--fd': {
        const v = value();
        if (!/^\d+$/.test(v)) throw new ConfigError(`--fd: expected a file descriptor number, got "${v}"`);
        listenFd = Number(v);
        break;
      }
      case '--lun': cliLuns.push(parseLunSpec(value())); break;
      case '--config': configFile = value(); break;
      case '--queues': partial.queues = parseQueues('--queues', value()); break;
      case '--poll-us': partial.pollUs = parsePollUs('--poll-us', value()); break;
      case '--initiator-id': partial.initiatorId = value(); break;
      case '--log-level': {
        const v = value();
        if (!isLogLevel(v)) throw new ConfigError(`--log-level: expected debug, info, warn, error or silent, got "${v}"`);
        partial.logLevel = v;
        break;
      }
      case '--print-qemu-args': printQemuArgs = true; break;
      default:
        throw new ConfigError(`unknown argument "${a}" (see --help)`);
    }
  }
  const fromFile = configFile ? loadConfigFile(configFile) : {};
  const merged: PartialConfig = {
    ...fromFile, ...stripUndefined(partial),
    luns: [...(fromFile.luns ?? []), ...cliLuns],
    ports: [...(fromFile.ports ?? []), ...cliPorts],
    hostLuns: [...(fromFile.hostLuns ?? []), ...cliHost],
  };
  if (cliGroups.length > 0 || fromFile.targetPortGroups !== undefined) {
    merged.targetPortGroups = [...(fromFile.targetPortGroups ?? []), ...cliGroups];
  }
  if (configFile !== undefined) {
    merged.configFile = configFile;
    merged.commandLineLuns = cliLuns.map((l) => l.lun);
  }
  if (listenFd >= 0 && !merged.socket) merged.socket = `fd:${listenFd}`;
  return { config: finishConfig(merged), listenFd, printQemuArgs };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** The QEMU arguments that attach the port(s) to one VM (QEMU 7.2 and 10.0 both accept them). */
export function qemuArgs(config: ServeConfig, memory = '1G', ports: readonly PortConfig[] = config.ports.slice(0, 1)): string[] {
  const out = [
    '-object', `memory-backend-memfd,id=mem0,size=${memory},share=on`,
    '-numa', 'node,memdev=mem0',
  ];
  ports.forEach((p, i) => {
    out.push('-chardev', `socket,id=vus${i},path=${resolve(p.socket)}`);
    out.push('-device', `vhost-user-scsi-pci,chardev=vus${i},num_queues=${p.queues}`);
  });
  return out;
}

function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function printAttachHelp(config: ServeConfig): void {
  const args = qemuArgs(config).map(shellQuote);
  const more = config.ports.slice(1).map((p) => `  also on ${resolve(p.socket)} (target port ${p.targetPortId}, ${p.wwn}, group ${p.group}): ` +
    `attach another VM (shared disk) or add it to the same VM as a second controller (multipath)\n`).join('');
  process.stdout.write(
    `vhost-scsi-ts: serving ${config.luns.length} LUN(s) on ${resolve(config.socket)} (target port ${config.ports[0].targetPortId}, ${config.ports[0].wwn}, initiator ${config.initiatorId})\n` +
      more +
      `Attach QEMU (7.2 or 10.0) with:\n` +
      `  qemu-system-x86_64 -machine q35 -m 1G -smp 2 \\\n` +
      `    ${args.slice(0, 4).join(' ')} \\\n    ${args.slice(4).join(' ')} \\\n` +
      `    -kernel ... (or your disk image)\n` +
      `To survive a backend restart, QEMU >= 8.2 can reconnect: add ",reconnect-ms=1000" to -chardev\n` +
      `(",reconnect=1" before QEMU 9.2). A test guest: qemu-scripts/run-guest.sh --vhost-user-scsi ${shellQuote(config.socket)} --shell\n`,
  );
}

export function main(argv: string[]): void {
  const [command, ...rest] = argv;
  if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
    process.stdout.write(USAGE);
    process.exitCode = command === undefined ? 2 : 0;
    return;
  }
  if (command === '--print-capabilities') {
    process.stdout.write(JSON.stringify({ type: 'scsi' }) + '\n');
    return;
  }
  if (command === 'host') {
    process.exitCode = hostCommand(rest, (s) => process.stdout.write(s), (s) => process.stderr.write(s));
    return;
  }
  if (command !== 'serve') {
    process.stderr.write(`vhost-scsi-ts: unknown command "${command}" (try: vhost-scsi-ts serve --help)\n`);
    process.exitCode = 2;
    return;
  }
  if (rest.includes('-h') || rest.includes('--help')) {
    process.stdout.write(USAGE);
    return;
  }
  if (rest.includes('--print-capabilities')) {
    process.stdout.write(JSON.stringify({ type: 'scsi' }) + '\n');
    return;
  }
  let parsed: Parsed;
  try {
    parsed = parseServeArgs(rest);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`vhost-scsi-ts: ${e.message}\n`);
      process.exitCode = 2;
      return;
    }
    throw e;
  }
  const { config } = parsed;
  if (parsed.printQemuArgs) {
    process.stdout.write(qemuArgs(config).map(shellQuote).join(' ') + '\n');
    return;
  }
  const log = new Logger(config.logLevel);
  let backend: Backend;
  try {
    backend = startBackend(config, log, parsed.listenFd);
  } catch (e) {
    const msg = e instanceof ConfigError ? e.message : `${(e as Error).message}`;
    process.stderr.write(`vhost-scsi-ts: ${msg}\n`);
    process.exitCode = e instanceof ConfigError ? 2 : 1;
    return;
  }
  printAttachHelp(config);
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (++signals > 1) {
      log.warn(`${sig} again: exiting without waiting`);
      process.exit(1);
    }
    log.info(`${sig}: draining in-flight I/O and flushing`);
    // vhost-user.rst: end quickly on SIGTERM; bounded so a stuck backing store cannot keep us alive.
    const guard = setTimeout(() => {
      log.error('shutdown did not finish within 10 s; exiting');
      process.exit(1);
    }, 10_000);
    backend.shutdown((err) => {
      clearTimeout(guard);
      if (err) log.error(`shutdown: ${err.message}`);
      process.exit(err ? 1 : 0);
    });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // A person edited the --config file: apply its LUN changes (backend/reload.ts).
  process.on('SIGHUP', () => {
    if (signals > 0) return; // shutting down
    backend.reload();
  });
  // V8.5: an internal invariant broke. Fail stop and let the supervisor restart us (QEMU reconnects).
  process.on('uncaughtException', (err) => {
    log.error(`internal error, exiting: ${err.stack ?? err.message}`);
    process.exit(70);
  });
}

if (require.main === module) main(process.argv.slice(2));
