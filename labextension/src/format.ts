/**
 * Human formatting with scaled units and two significant figures, like the
 * Python side: `38 W`, `500 mW`, `2.1 g`, `12 mg`, `≈ 12 g (8.1–17 g)`.
 *
 * Rules that hold for every figure shown:
 * - the number and its unit are joined by a no-break space (`NBSP`), so a line
 *   never wraps between them;
 * - the smallest unit is a floor: below 0.01 of it a figure reads `< 0.01 mg`
 *   (grams have no µg, energy no µWh: amounts nobody can act on);
 * - a view of several figures of one kind uses one unit, chosen for its largest
 *   value (`unitFor`, `formatIn`), so that units do not jump from line to line.
 */

/** The no-break space between a number and its unit. */
export const NBSP = '\u00a0';

/** A unit of a scale: what one of it is worth in the base unit, and its symbol. */
export type Unit = readonly [factor: number, symbol: string];
type Scale = ReadonlyArray<Unit>;

// Below the smallest unit's FLOOR a figure reads `< 0.01 <unit>`.
const FLOOR = 0.01;

export const WATTS: Scale = [
  [1e3, 'kW'],
  [1, 'W'],
  [1e-3, 'mW']
];
export const GRAMS: Scale = [
  [1e6, 't'],
  [1e3, 'kg'],
  [1, 'g'],
  [1e-3, 'mg']
];
export const KWH: Scale = [
  [1e3, 'MWh'],
  [1, 'kWh'],
  [1e-3, 'Wh'],
  [1e-6, 'mWh']
];

/** `value` rounded to `digits` significant figures, as text without false digits. */
export function significant(value: number, digits = 2): string {
  if (!Number.isFinite(value)) {
    return '—';
  }
  if (value === 0) {
    return '0';
  }
  const rounded = Number(value.toPrecision(digits));
  if (Math.abs(rounded) >= 10 ** (digits - 1)) {
    return Math.round(rounded).toLocaleString('en-US');
  }
  return String(rounded);
}

/** The unit of `scale` for the largest magnitude among `values` (its smallest unit
 * when every value is zero or below it). */
export function unitFor(scale: Scale, values: Iterable<number>): Unit {
  let largest = 0;
  for (const value of values) {
    if (Number.isFinite(value)) {
      largest = Math.max(largest, Math.abs(value));
    }
  }
  return scale.find(([factor]) => largest >= factor) ?? scale[scale.length - 1];
}

/** `value` in `unit`: two significant figures, at most two decimals, and the floor
 * (`< 0.01 mg`) for a non-zero value that would round to nothing. */
export function formatIn(value: number, unit: Unit): string {
  const [factor, symbol] = unit;
  if (!Number.isFinite(value)) {
    return `—${NBSP}${symbol}`;
  }
  const amount = value / factor;
  if (amount !== 0 && Math.abs(amount) < FLOOR) {
    return `${amount < 0 ? '>' + NBSP + '−' : '<' + NBSP}${FLOOR}${NBSP}${symbol}`;
  }
  const text =
    Math.abs(amount) >= 1
      ? significant(amount)
      : String(Number(Number(amount.toPrecision(2)).toFixed(2)));
  return `${text}${NBSP}${symbol}`;
}

function scaled(value: number, scale: Scale): string {
  return formatIn(value, unitFor(scale, [value]));
}

/** Watts: `38.2` → `38 W`, `0.5` → `500 mW`, `1500` → `1.5 kW`. */
export function formatWatts(watts: number): string {
  return scaled(watts, WATTS);
}

/** Grams CO2e: `2.13` → `2.1 g`, `0.012` → `12 mg`, `1e-6` → `< 0.01 mg`. */
export function formatGrams(grams: number, unit?: Unit): string {
  return unit ? formatIn(grams, unit) : scaled(grams, GRAMS);
}

/** Energy: `0.0021` kWh → `2.1 Wh`; below 0.01 mWh, `< 0.01 mWh`. */
export function formatKwh(kwh: number, unit?: Unit): string {
  return unit ? formatIn(kwh, unit) : scaled(kwh, KWH);
}

/** `≈ 12 g (8.1–17 g)`: the central value and its range, all in one unit (that of
 * the high end, or `unit`); a zero range reads `0 mg`. */
export function formatGramsRange(
  grams: number,
  low: number,
  high: number,
  unit?: Unit
): string {
  if (grams === 0 && low === 0 && high === 0) {
    return formatGrams(0);
  }
  const chosen = unit ?? unitFor(GRAMS, [grams, low, high]);
  return `≈ ${formatIn(grams, chosen)} (${formatIn(low, chosen)}–${formatIn(high, chosen)})`;
}

/** Seconds: `4.2` → `4 s`, `75` → `1 min 15 s`, `7300` → `2 h 2 min`. */
export function formatAge(seconds: number): string {
  if (seconds < 60) {
    return `${Math.round(seconds)}${NBSP}s`;
  }
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) {
    return `${minutes}${NBSP}min ${Math.round(seconds % 60)}${NBSP}s`;
  }
  return `${Math.floor(minutes / 60)}${NBSP}h ${minutes % 60}${NBSP}min`;
}

/** A cell's duration: `450 ms`, `12.1 s`, `2 min 5 s`, `1 h 3 min`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) {
    return '—';
  }
  if (seconds < 1) {
    return `${Math.round(seconds * 1000)}${NBSP}ms`;
  }
  if (seconds < 59.95) {
    return `${Number(seconds.toPrecision(3))}${NBSP}s`;
  }
  return formatAge(seconds);
}

/** A fraction as a percentage: `0.42` → `42%`. */
export function formatPercent(fraction: number): string {
  if (!Number.isFinite(fraction)) {
    return '—';
  }
  return `${Math.round(Math.min(1, Math.max(0, fraction)) * 100)}%`;
}
