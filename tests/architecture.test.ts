// DESIGN.md "Modules and the direction of knowledge": scsi-emul and virtqueue import
// nothing else of ours; only backend knows both virtio and SCSI. This test reads the
// sources (not dist/) so it also catches type-only imports.
import t from 'tap';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve, dirname } from 'node:path';

const root = resolve(__dirname, '..', '..');

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

const importRe = /(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|require\(\s*['"]([^'"]+)['"]\s*\)|import\(\s*['"]([^'"]+)['"]\s*\)/g;

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specs: string[] = [];
  for (const m of text.matchAll(importRe)) specs.push(m[1] ?? m[2] ?? m[3]);
  return specs;
}

function topModule(file: string): string {
  return relative(root, file).split('/')[0];
}

const rules: Record<string, { ours: string[]; forbiddenNode: RegExp }> = {
  'scsi-emul': { ours: ['scsi-emul'], forbiddenNode: /^(node:)?(net|dgram|child_process|worker_threads)$/ },
  virtqueue: { ours: ['virtqueue'], forbiddenNode: /^(node:)?(net|dgram|fs|child_process|worker_threads)$/ },
};

for (const [mod, rule] of Object.entries(rules)) {
  t.test(`${mod} imports only itself and allowed node modules`, (t) => {
    const files = sources(join(root, mod));
    t.ok(files.length > 0, `${mod} has sources`);
    for (const file of files) {
      for (const spec of importsOf(file)) {
        if (spec.startsWith('.')) {
          const target = topModule(resolve(dirname(file), spec));
          t.ok(rule.ours.includes(target), `${relative(root, file)} imports ${spec}`);
        } else {
          t.notOk(rule.forbiddenNode.test(spec), `${relative(root, file)} must not import ${spec}`);
          t.notOk(/vhost_scsi_native|\.node$/.test(spec), `${relative(root, file)} must not load the addon`);
        }
      }
    }
    t.end();
  });
}
