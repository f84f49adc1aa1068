// The matrix's command line. Every value is checked; a mistake is one line naming the option
// and exit status 2 (bench/run.ts).

import { BACKEND_IDS, MODES, PLACEMENTS, POINTS, type BackendId, type Mode, type Placement } from './plan';

export class UsageError extends Error {}

export interface Options {
  runs: number;
  runtimeS: number;
  rampS: number;
  /** unrecorded load on each backend after it starts */
  warmupS: number;
  points: string[];
  backends: BackendId[];
  placements: Placement[];
  modes: Mode[];
  quick: boolean;
  outDir: string;
  label: string;
  cpuProf: boolean;
  /** extra arguments for our backends' `serve` */
  backendArgs: string[];
  /** the load generator executable (a .js file runs under node: the test fake) */
  loadgen: string;
  help: boolean;
}

export const USAGE = `usage: npm run bench -- [options]
       node dist/bench/run.js [options]

Runs the load generator (build/Release/vhost_loadgen) against vhost-scsi-ts and
qemu-storage-daemon side by side and writes <out>/<label>.{json,md,svg}.

  --runs N             interleaved runs per point and backend (default 5)
  --runtime S          measured seconds per generator run (default 3)
  --ramp S             discarded warm-up seconds before each measurement (default 0.5)
  --warmup S           unrecorded load on each backend after it starts (default 1; 0: none)
  --points LIST        comma-separated, from: ${POINTS.map((p) => p.id).join(', ')}
                       (default all)
  --backends LIST      from: ${BACKEND_IDS.join(', ')} (default all)
  --placements LIST    split (backend vCPU 0, generator vCPU 1), same (both vCPU 0) (default both)
  --modes LIST         irq, poll (poll runs only where planned: rr4k-qd1, rr4k-qd32, split)
  --quick              --runs 2 --runtime 1 unless given: a ~3-minute sanity pass
  --out DIR            output directory (default bench/results)
  --label NAME         output file stem (default latest)
  --cpu-prof           run our backends under node --cpu-prof and keep the profiles
                       (diagnostic: the numbers are then not comparable)
  --backend-args ARGS  extra arguments for our backends' serve command (one string, split on
                       blanks; quotes group), to A/B engine options
  --loadgen PATH       the load generator (default build/Release/vhost_loadgen)
  -h, --help           this text
`;

function positiveNumber(flag: string, v: string, min: number, max: number): number {
  if (!/^\d+(\.\d+)?$/.test(v)) throw new UsageError(`${flag}: expected a number, got ${JSON.stringify(v)}`);
  const n = Number(v);
  if (!(n >= min && n <= max)) throw new UsageError(`${flag}: ${v} is outside ${min}..${max}`);
  return n;
}

function integer(flag: string, v: string, min: number, max: number): number {
  if (!/^\d+$/.test(v)) throw new UsageError(`${flag}: expected an integer, got ${JSON.stringify(v)}`);
  const n = Number(v);
  if (n < min || n > max) throw new UsageError(`${flag}: ${v} is outside ${min}..${max}`);
  return n;
}

function list<T extends string>(flag: string, v: string, allowed: readonly T[]): T[] {
  const items = v.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (items.length === 0) throw new UsageError(`${flag}: empty list`);
  const out: T[] = [];
  for (const it of items) {
    if (!(allowed as readonly string[]).includes(it)) {
      throw new UsageError(`${flag}: unknown ${JSON.stringify(it)} (valid: ${allowed.join(', ')})`);
    }
    if (!out.includes(it as T)) out.push(it as T);
  }
  return out;
}

/** Splits on blanks; single or double quotes group (no escapes inside single quotes, \\ " inside double). */
export function splitArgs(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (quote !== null) {
      if (c === quote) quote = null;
      else if (quote === '"' && c === '\\' && (s[i + 1] === '"' || s[i + 1] === '\\')) cur += s[++i];
      else cur += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) out.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (quote !== null) throw new UsageError(`--backend-args: unterminated ${quote} quote`);
  if (inWord) out.push(cur);
  return out;
}

export function parseOptions(argv: readonly string[], defaults: { outDir: string; loadgen: string }): Options {
  const o: Options = {
    runs: 5, runtimeS: 3, rampS: 0.5, warmupS: 1,
    points: POINTS.map((p) => p.id), backends: [...BACKEND_IDS], placements: [...PLACEMENTS], modes: [...MODES],
    quick: false, outDir: defaults.outDir, label: 'latest', cpuProf: false, backendArgs: [], loadgen: defaults.loadgen, help: false,
  };
  const given = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    let flag = a;
    let inline: string | undefined;
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) {
      flag = a.slice(0, eq);
      inline = a.slice(eq + 1);
    }
    const value = (): string => {
      if (inline !== undefined) return inline;
      const v = argv[i + 1];
      // --backend-args legitimately starts with "--".
      if (v === undefined || (flag !== '--backend-args' && v.startsWith('--'))) throw new UsageError(`${flag} needs a value`);
      i++;
      return v;
    };
    if (given.has(flag) && flag !== '--quick' && flag !== '--cpu-prof') throw new UsageError(`${flag} given twice`);
    given.add(flag);
    switch (flag) {
      case '--runs': o.runs = integer(flag, value(), 1, 100); break;
      case '--runtime': o.runtimeS = positiveNumber(flag, value(), 0.5, 600); break;
      case '--ramp': o.rampS = positiveNumber(flag, value(), 0, 60); break;
      case '--warmup': o.warmupS = positiveNumber(flag, value(), 0, 60); break;
      case '--points': o.points = list(flag, value(), POINTS.map((p) => p.id)); break;
      case '--backends': o.backends = list(flag, value(), BACKEND_IDS); break;
      case '--placements': o.placements = list(flag, value(), PLACEMENTS); break;
      case '--modes': o.modes = list(flag, value(), MODES); break;
      case '--quick': if (inline !== undefined) throw new UsageError('--quick takes no value'); o.quick = true; break;
      case '--cpu-prof': if (inline !== undefined) throw new UsageError('--cpu-prof takes no value'); o.cpuProf = true; break;
      case '--out': {
        const v = value();
        if (v === '') throw new UsageError('--out: empty path');
        o.outDir = v;
        break;
      }
      case '--label': {
        const v = value();
        if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(v)) throw new UsageError(`--label: ${JSON.stringify(v)} must be 1-64 of [A-Za-z0-9._-], not starting with . - or _`);
        o.label = v;
        break;
      }
      case '--backend-args': o.backendArgs = splitArgs(value()); break;
      case '--loadgen': {
        const v = value();
        if (v === '') throw new UsageError('--loadgen: empty path');
        o.loadgen = v;
        break;
      }
      case '-h': case '--help': o.help = true; break;
      default: throw new UsageError(`unknown option ${JSON.stringify(a)} (see --help)`);
    }
  }
  if (o.quick) {
    if (!given.has('--runs')) o.runs = 2;
    if (!given.has('--runtime')) o.runtimeS = 1;
  }
  return o;
}
