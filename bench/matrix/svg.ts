// A self-contained SVG chart: one panel per placement, a group of bars per case (median IOPS
// per backend, min–max whiskers) on a log scale, the ours/peer ratios above each group.

import { PLACEMENT_LEGEND, PLACEMENTS, type BackendId } from './plan';
import type { CaseSummary } from './results';
import { fmtCount, fmtRatio } from './report';

const COLORS: Readonly<Record<BackendId, string>> = {
  'ours-file': '#1f77b4',
  'ours-ram': '#17becf',
  'qsd-native': '#d62728',
  'qsd-threads': '#ff7f0e',
  'qsd-null': '#7f7f7f',
};

const BAR_W = 14;
const GROUP_GAP = 22;
/** wide enough for the labels under a group */
const GROUP_MIN_W = 66;
const LEFT = 64;
const RIGHT = 24;
const PANEL_H = 260;
const RATIO_H = 40;
const LABEL_H = 52;
const PANEL_GAP = 28;

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function n(v: number): string {
  return (Math.round(v * 10) / 10).toString();
}

export function renderSvg(cases: readonly CaseSummary[], title: string, subtitle: string): string {
  const placements = PLACEMENTS.filter((p) => cases.some((c) => c.placement === p));
  const used = new Set<BackendId>();
  let lo = Infinity;
  let hi = 0;
  for (const c of cases) {
    for (const b of c.backends) {
      if (b.iops === null) continue;
      used.add(b.backend);
      lo = Math.min(lo, b.iops.min);
      hi = Math.max(hi, b.iops.max);
    }
  }
  if (!Number.isFinite(lo) || hi <= 0) {
    lo = 1000;
    hi = 1_000_000;
  }
  const decLo = Math.floor(Math.log10(Math.max(lo, 1)));
  const decHi = Math.max(decLo + 1, Math.ceil(Math.log10(hi)));
  const groupW = (c: CaseSummary): number => Math.max(GROUP_MIN_W, c.backends.length * BAR_W + GROUP_GAP);
  const panelW = (p: string): number => cases.filter((c) => c.placement === p).reduce((s, c) => s + groupW(c), 0);
  const width = Math.max(640, LEFT + Math.max(0, ...placements.map(panelW)) + RIGHT);
  const top = 92;
  const panelTotal = RATIO_H + PANEL_H + LABEL_H;
  const height = top + placements.length * (panelTotal + PANEL_GAP) + 10;

  const o: string[] = [];
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`);
  o.push(`<rect width="${width}" height="${height}" fill="#fff"/>`);
  o.push(`<text x="${LEFT}" y="20" font-size="15" font-weight="bold">${esc(title)}</text>`);
  o.push(`<text x="${LEFT}" y="37" fill="#444">${esc(subtitle)}</text>`);
  // Legend.
  let lx = LEFT;
  for (const b of Object.keys(COLORS) as BackendId[]) {
    if (!used.has(b)) continue;
    o.push(`<rect x="${lx}" y="47" width="11" height="11" fill="${COLORS[b]}"/>`);
    o.push(`<text x="${lx + 15}" y="57">${esc(b)}</text>`);
    lx += 22 + b.length * 6.5;
  }
  o.push(`<text x="${LEFT}" y="76" fill="#444">bars: median IOPS; whiskers: min–max; numbers above a group: ours ÷ that peer, in the peer's colour</text>`);

  placements.forEach((p, pi) => {
    const y0 = top + pi * (panelTotal + PANEL_GAP);
    const plotTop = y0 + RATIO_H;
    const plotBottom = plotTop + PANEL_H;
    const y = (v: number): number => {
      const t = (Math.log10(Math.max(v, 10 ** decLo)) - decLo) / (decHi - decLo);
      return plotBottom - t * PANEL_H;
    };
    o.push(`<text x="${LEFT}" y="${y0 + 12}" font-size="13" font-weight="bold">${esc(p)}: ${esc(PLACEMENT_LEGEND[p])}</text>`);
    // Decade grid.
    for (let d = decLo; d <= decHi; d++) {
      const yy = y(10 ** d);
      o.push(`<line x1="${LEFT}" x2="${width - RIGHT}" y1="${n(yy)}" y2="${n(yy)}" stroke="#ddd"/>`);
      o.push(`<text x="${LEFT - 6}" y="${n(yy + 4)}" text-anchor="end" fill="#444">${esc(fmtCount(10 ** d))}</text>`);
    }
    o.push(`<text transform="translate(14,${n((plotTop + plotBottom) / 2)}) rotate(-90)" text-anchor="middle" fill="#444">IOPS (log)</text>`);
    o.push(`<line x1="${LEFT}" x2="${LEFT}" y1="${plotTop}" y2="${plotBottom}" stroke="#888"/>`);
    let x = LEFT;
    for (const c of cases.filter((cc) => cc.placement === p)) {
      const gx = x + (groupW(c) - c.backends.length * BAR_W) / 2;
      c.backends.forEach((b, bi) => {
        const bx = gx + bi * BAR_W;
        if (b.iops === null) {
          o.push(`<text x="${n(bx + BAR_W / 2)}" y="${plotBottom - 4}" text-anchor="middle" fill="#a00">×</text>`);
          return;
        }
        const tip = `${c.point} ${c.placement} ${c.mode} ${b.backend}: ${fmtCount(b.iops.median)} IOPS [${fmtCount(b.iops.min)}–${fmtCount(b.iops.max)}], ${b.okRuns} runs`;
        o.push(`<rect x="${n(bx + 1)}" y="${n(y(b.iops.median))}" width="${BAR_W - 2}" height="${n(plotBottom - y(b.iops.median))}" fill="${COLORS[b.backend]}"><title>${esc(tip)}</title></rect>`);
        const cx = bx + BAR_W / 2;
        o.push(`<line x1="${n(cx)}" x2="${n(cx)}" y1="${n(y(b.iops.max))}" y2="${n(y(b.iops.min))}" stroke="#000"/>`);
        o.push(`<line x1="${n(cx - 3)}" x2="${n(cx + 3)}" y1="${n(y(b.iops.max))}" y2="${n(y(b.iops.max))}" stroke="#000"/>`);
        o.push(`<line x1="${n(cx - 3)}" x2="${n(cx + 3)}" y1="${n(y(b.iops.min))}" y2="${n(y(b.iops.min))}" stroke="#000"/>`);
      });
      const mid = gx + (c.backends.length * BAR_W) / 2;
      c.ratios.forEach((r, ri) => {
        o.push(`<text x="${n(mid)}" y="${plotTop - 4 - ri * 12}" text-anchor="middle" fill="${COLORS[r.peer]}">${esc(fmtRatio(r.iops))}</text>`);
      });
      // "rr4k-qd32-2q" → "rr4k" / "QD32 × 2q"; then the mode or comparison when it is not the default.
      const [pattern, qd, q] = c.point.split('-');
      const l2 = `${(qd ?? '').toUpperCase()}${q !== undefined ? ` × ${q}` : ''}`;
      const l3 = [c.mode === 'poll' ? 'gen. poll' : '', c.group === 'ram' ? 'ram/null' : ''].filter((v) => v !== '').join(' ');
      o.push(`<text x="${n(mid)}" y="${plotBottom + 14}" text-anchor="middle">${esc(pattern)}</text>`);
      o.push(`<text x="${n(mid)}" y="${plotBottom + 27}" text-anchor="middle">${esc(l2)}</text>`);
      if (l3 !== '') o.push(`<text x="${n(mid)}" y="${plotBottom + 40}" text-anchor="middle" fill="#444">${esc(l3)}</text>`);
      x += groupW(c);
    }
  });
  o.push('</svg>');
  return `${o.join('\n')}\n`;
}

