/**
 * Human formatting with scaled units and two significant figures, like the
 * Python side: `38 W`, `500 mW`, `2.1 g`, `12 mg`, `≈ 12 g (8.1–17 g)`.
 */

type Scale = ReadonlyArray<readonly [number, string]>;

const WATTS: Scale = [
  [1e3, 'kW'],
  [1, 'W'],
  [1e-3, 'mW']
];
const GRAMS: Scale = [
  [1e6, 't'],
  [1e3, 'kg'],
  [1, 'g'],
  [1e-3, 'mg'],
  [1e-6, 'µg']
];
const KWH: Scale = [
  [1e3, 'MWh'],
  [1, 'kWh'],
  [1e-3, 'Wh'],
  [1e-6, 'mWh'],
  [1e-9, 'µWh']
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

function scaled(value: number, scale: Scale, digits = 2): string {
  const magnitude = Math.abs(value);
  for (const [factor, unit] of scale) {
    if (magnitude >= factor) {
      return `${significant(value / factor, digits)} ${unit}`;
    }
  }
  const [factor, unit] = scale[scale.length - 1];
  return `${significant(value / factor, digits)} ${unit}`;
}

/** Watts: `38.2` → `38 W`, `0.5` → `500 mW`, `1500` → `1.5 kW`. */
export function formatWatts(watts: number): string {
  return scaled(watts, WATTS);
}

/** Grams CO2e: `2.13` → `2.1 g`, `0.012` → `12 mg`, `1234` → `1.2 kg`. */
export function formatGrams(grams: number): string {
  return scaled(grams, GRAMS);
}

/** Energy: `0.0021` kWh → `2.1 Wh`. */
export function formatKwh(kwh: number): string {
  return scaled(kwh, KWH);
}

/** `≈ 12 g (8.1–17 g)`: the central value and its range. */
export function formatGramsRange(
  grams: number,
  low: number,
  high: number
): string {
  return `≈ ${formatGrams(grams)} (${formatGrams(low)}–${formatGrams(high)})`;
}

/** Seconds: `4.2` → `4 s`, `75` → `1 min 15 s`, `7300` → `2 h 2 min`. */
export function formatAge(seconds: number): string {
  if (seconds < 60) {
    return `${Math.round(seconds)} s`;
  }
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) {
    return `${minutes} min ${Math.round(seconds % 60)} s`;
  }
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/** A cell's duration: `450 ms`, `12.1 s`, `2 min 5 s`, `1 h 3 min`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) {
    return '—';
  }
  if (seconds < 1) {
    return `${Math.round(seconds * 1000)} ms`;
  }
  if (seconds < 59.95) {
    return `${Number(seconds.toPrecision(3))} s`;
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
