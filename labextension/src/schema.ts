/**
 * The JSON of the server's endpoints, as TypeScript types, with checks that hold every
 * answer to them (pure: no JupyterLab imports).
 *
 * The interfaces and their checks are generated from the server's declarations
 * (`records.generated.ts`, from carbon_magic/records.py); this module gives them the
 * names the extension uses. With `strict`, fields an interface does not declare are
 * errors too (the unit tests use it on real answers of the server).
 *
 * Units follow the server: seconds, joules, watts, kWh, grams CO2e, gCO2e/kWh.
 */

import { SchemaError } from './checks';
import {
  cellsPageShape,
  ICellsPage,
  IKernelFigures,
  IPrediction,
  ISummary,
  kernelFiguresShape,
  predictionShape,
  summaryShape
} from './records.generated';

export type * from './records.generated';
export { SchemaError } from './checks';

/**
 * `value` as a kernel's figures; throws `SchemaError` saying where it differs.
 * With `strict`, fields the interface does not declare are errors too.
 */
export function checkKernelFigures(
  value: unknown,
  strict = false
): IKernelFigures {
  kernelFiguresShape(value, 'kernel', strict);
  return value as IKernelFigures;
}

/**
 * `value` as a page of cells; throws `SchemaError` saying where it differs.
 * With `strict`, fields the interface does not declare are errors too.
 */
export function checkCellsPage(value: unknown, strict = false): ICellsPage {
  cellsPageShape(value, 'cells page', strict);
  return value as ICellsPage;
}

/**
 * `value` as the server's summary; throws `SchemaError` saying where it differs.
 * With `strict`, fields the interface does not declare are errors too.
 */
export function checkSummary(value: unknown, strict = false): ISummary {
  summaryShape(value, 'summary', strict);
  return value as ISummary;
}

let warnedPrediction = false;

/**
 * A kernel's `prediction` field: `null` when absent, null or malformed (a
 * malformed one is reported once on the console, and ignored).
 */
export function readPrediction(value: unknown): IPrediction | null {
  if (value === undefined || value === null) {
    return null;
  }
  try {
    predictionShape(value, 'prediction', false);
  } catch (error) {
    if (!(error instanceof SchemaError)) {
      throw error;
    }
    if (!warnedPrediction) {
      warnedPrediction = true;
      console.warn('carbon_magic: ignoring a malformed prediction', error);
    }
    return null;
  }
  return value as IPrediction;
}
