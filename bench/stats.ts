// Medians with their range. Ratios are always ratios of medians (performance.md, "Harness rules").

export interface Spread {
  median: number;
  min: number;
  max: number;
  n: number;
}

/** Median (mean of the middle two for an even count), min and max of the finite values; null if none. */
export function spread(values: readonly (number | null | undefined)[]): Spread | null {
  const v = values.filter((x): x is number => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = v.length >> 1;
  const median = v.length % 2 === 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
  return { median, min: v[0], max: v[v.length - 1], n: v.length };
}

/** Median of a non-empty list. */
export function median(values: readonly number[]): number {
  const s = spread(values);
  if (s === null) throw new RangeError('median of an empty list');
  return s.median;
}

/** Median of the values present, null if none. */
export function medianOrNull(values: readonly (number | null)[]): number | null {
  return spread(values)?.median ?? null;
}

/** a / b of two medians, null when either is missing or b is 0. */
export function ratio(a: Spread | null | undefined, b: Spread | null | undefined): number | null {
  if (a == null || b == null || b.median === 0) return null;
  return a.median / b.median;
}

/** Rotates a list left by k (interleaved runs change the backend order each run to cancel drift). */
export function rotate<T>(list: readonly T[], k: number): T[] {
  if (list.length === 0) return [];
  const s = ((k % list.length) + list.length) % list.length;
  return [...list.slice(s), ...list.slice(0, s)];
}
