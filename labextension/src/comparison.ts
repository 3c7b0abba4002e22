/**
 * Everyday comparisons of an amount of CO₂e, with their source. Pure.
 */
import { NBSP, significant } from './format';

/** Grams CO₂e per metre driven by an average passenger car: 400 g per mile. */
export const CAR_G_PER_M = 400 / 1609.344;

export const CAR_SOURCE =
  'US EPA, Greenhouse Gas Equivalencies Calculator: an average passenger vehicle emits about 400 g CO₂e per mile (249 g per km).';

/** A comparison: its text and where its figure comes from. */
export interface IComparison {
  text: string;
  source: string;
}

/** `≈ 12 m by car` for `grams` CO₂e (mm and cm below a metre, km from 1 km); null
 * for nothing or less than a millimetre. */
export function everydayComparison(grams: number): IComparison | null {
  if (!Number.isFinite(grams) || grams <= 0) {
    return null;
  }
  const metres = grams / CAR_G_PER_M;
  let distance: string;
  if (metres < 0.001) {
    return null;
  } else if (metres < 0.01) {
    distance = `${significant(metres * 1000)}${NBSP}mm`;
  } else if (metres < 1) {
    distance = `${significant(metres * 100)}${NBSP}cm`;
  } else if (metres < 1000) {
    distance = `${significant(metres)}${NBSP}m`;
  } else {
    distance = `${significant(metres / 1000)}${NBSP}km`;
  }
  return { text: `≈ ${distance} by car`, source: CAR_SOURCE };
}
