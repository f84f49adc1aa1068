// Human-readable sizes for configuration ("512M", "4G", "1.5G").

const UNITS: Record<string, number> = {
  '': 1,
  B: 1,
  K: 2 ** 10,
  M: 2 ** 20,
  G: 2 ** 30,
  T: 2 ** 40,
  P: 2 ** 50,
};

const SIZE_RE = /^(\d+)(?:\.(\d+))?([BKMGTP]?)$/i;

/**
 * Parses a byte count: digits, an optional fraction, and an optional binary unit letter
 * (B, K, M, G, T, P = powers of 1024, case-insensitive), as QEMU's size options do. A
 * fraction is accepted only when the result is a whole number of bytes ("1.5G" yes, "1.3K"
 * no). The result must be a safe integer. Anything else throws.
 */
export function parseSize(text: string): number {
  if (typeof text !== 'string') throw new TypeError(`size must be a string, got ${typeof text}`);
  const m = SIZE_RE.exec(text.trim());
  if (m === null) {
    throw new Error(`invalid size ${JSON.stringify(text)}: expected digits with an optional unit B, K, M, G, T or P (e.g. 512M, 4G)`);
  }
  const unit = UNITS[m[3].toUpperCase()];
  const whole = BigInt(m[1]) * BigInt(unit);
  let value = whole;
  if (m[2] !== undefined) {
    // Exact rational arithmetic: fraction digits f over 10^len, times the unit.
    const num = BigInt(m[2]) * BigInt(unit);
    const den = 10n ** BigInt(m[2].length);
    if (num % den !== 0n) {
      throw new Error(`invalid size ${JSON.stringify(text)}: not a whole number of bytes`);
    }
    value += num / den;
  }
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new Error(`invalid size ${JSON.stringify(text)}: larger than ${Number.MAX_SAFE_INTEGER} bytes`);
  }
  return Number(value);
}
