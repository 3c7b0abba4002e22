/**
 * The JSON of the kernel and cells endpoints, as TypeScript types,
 * with checks that hold every answer to them (pure: no JupyterLab imports).
 *
 * Each check table is typed by its interface (`Checks<T>` needs one check per key),
 * so a field added to an interface without a check does not compile; `strict` mode
 * also rejects fields the interface does not know (the unit tests use it on a real
 * answer of the server).
 *
 * Units follow the server: seconds, joules, watts, kWh, grams CO2e, gCO2e/kWh.
 */

import type { IKernelHint } from './hint';

/** Watts (or joules) per component. */
export interface IComponents {
  cpu: number;
  gpu: number;
  ram: number;
}

/** One recorded cell, as `GET …/cells` returns it. */
export interface ICellRecord {
  /** The ledger row id: increases in the order cells were recorded. */
  id: number;
  /** The notebook cell id the frontend sent with the execution. */
  cell_id: string | null;
  kernel_id: string | null;
  session_uuid: string;
  execution_count: number | null;
  name: string | null;
  /** The first source line, as text (never HTML). */
  source: string | null;
  via: string;
  status: string;
  started_at: number;
  ended_at: number;
  duration_s: number;
  /** IT energy per component, before PUE. */
  energy_j: IComponents;
  /** Mean power over the cell per component, and their sum. */
  power_w: IComponents & { total: number };
  /** Facility energy, after PUE. */
  energy_kwh: number;
  energy_range_kwh: [number, number];
  emissions_g: number;
  emissions_range_g: [number, number];
  embodied_g: number;
  intensity: { g_per_kwh: number; source: string };
  pue: number;
  mode: string;
  /** How each component was obtained: measured, modelled, assumed. */
  methods: Record<string, string>;
  budget: string | null;
  /** Hosted LLM calls the cell made, estimated (EcoLogits); not in the figures above. */
  remote: IRemotePart | null;
  /** Whether the figures above include `remote` (never, today). */
  totals_include_remote: boolean;
}

/** A cell's calls to hosted LLM APIs: kWh, grams CO2e (providers' grids), litres. */
export interface IRemotePart {
  count: number;
  estimated: number;
  unestimated: number;
  energy_kwh: number;
  energy_range_kwh: [number, number];
  emissions_g: number;
  emissions_range_g: [number, number];
  embodied_g: number;
  water_l: number;
  water_range_l: [number, number];
  method: string;
}

/** A page of cells: `GET …/kernels/{id}/cells` or `GET …/cells?path=`. */
export interface ICellsPage {
  kernel_id: string | null;
  notebook_path: string | null;
  now: number;
  after: number;
  limit: number;
  /** The cursor of the next page (`after=last_id`). */
  last_id: number;
  more: boolean;
  cells: ICellRecord[];
}

/** The running cell's predicted completion, when the kernel JSON carries one. */
export interface IPrediction {
  /** Fraction done, 0 to 1. */
  fraction: number;
  /** Predicted emissions of the whole cell and their range, grams CO2e. */
  emissions_g: number;
  emissions_range_g: [number, number];
  /** Seconds until the cell is predicted to end. */
  eta_s: number;
}

/** Cumulative figures: facility energy and emissions with their range. */
export interface ITotals {
  energy_kwh: number;
  emissions_g: number;
  emissions_low_g: number;
  emissions_high_g: number;
  embodied_g: number;
}

/** Watts per component and their sum. */
export interface IPower extends IComponents {
  total: number;
}

/** A GPU of the kernel's machine, from the tracker's hardware summary. */
export interface IGpu {
  /** `nvidia`, `amd`, `apple`, …: the vendor its device key names. */
  vendor: string;
  /** The product name, as text (never HTML): `NVIDIA H200`. */
  model: string;
}

/** The tracker lifetime (kernel process) the figures come from. */
export interface IKernelSession {
  session_uuid: string;
  host: string;
  pid: number;
  started_at: number;
  ended_at: number | null;
  interval_s: number;
  mode: string;
  /** How each component is obtained: measured, modelled, assumed. */
  methods: Record<string, string>;
  /** The machine's GPUs by device key (`nvidia:0`, `amd:0`, `apple:gpu`). */
  gpus: Record<string, IGpu>;
}

/** The latest heartbeat of the kernel's tracker. */
export interface IHeartbeat {
  at: number;
  running_cell: string | null;
  running_cell_started_at: number | null;
}

/** `GET carbon-magic/api/v1/kernels/{kernel_id}`. */
/** A notebook or day cap of the kernel, with what every session on the ledger spent on
 * it (grams CO2e or facility kWh, as `unit` says). */
export interface IScopeBudget {
  scope: 'day' | 'notebook';
  budget: string;
  limit: number;
  spent: number;
  remaining: number;
  fraction: number;
  unit: 'g' | 'kWh';
  on_exceed: 'warn' | 'stop';
}

export interface IKernelFigures {
  kernel_id: string;
  notebook_path: string | null;
  now: number;
  /** `lost`: a running tracker silent for so long that its kernel is taken as gone. */
  tracker_state: 'running' | 'stopped' | 'lost';
  live: boolean;
  stale: boolean;
  age_s: number;
  stale_after_s: number;
  power_w: IPower;
  totals: ITotals & { source: 'heartbeat' | 'cells'; n_cells: number | null };
  intensity: { g_per_kwh: number; source: string };
  /** The running cell's predicted completion, where the kernel has one. */
  prediction: IPrediction | null;
  /** The carbon-aware hint of the grid forecast, while the kernel is live. */
  hint: IKernelHint | null;
  heartbeat: IHeartbeat | null;
  session: IKernelSession;
  /** The kernel's notebook and day caps (empty when none is set). */
  budgets: IScopeBudget[];
  /** The session's hosted LLM calls, estimated; not in `totals`. */
  remote: IRemoteTotals | null;
  /** Whether `totals` include `remote` (never, today). */
  totals_include_remote: boolean;
}

/** A session's calls to hosted LLM APIs: kWh, grams CO2e, litres. */
export interface IRemoteTotals {
  count: number;
  unestimated: number;
  energy_kwh: number;
  emissions_g: number;
  emissions_range_g: [number, number];
  water_l: number;
}

/** Thrown when an answer does not have the shape its interface says. */
export class SchemaError extends Error {
  constructor(where: string, problem: string) {
    super(`${where}: ${problem}`);
    this.name = 'SchemaError';
  }
}

type Check = (value: unknown, where: string, strict: boolean) => void;
type Checks<T> = { [K in keyof T]-?: Check };

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

const number: Check = (value, where) => {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new SchemaError(
      where,
      `expected a finite number, got ${show(value)}`
    );
  }
};
const integer: Check = (value, where, strict) => {
  number(value, where, strict);
  if (!Number.isInteger(value)) {
    throw new SchemaError(where, `expected an integer, got ${show(value)}`);
  }
};
const string: Check = (value, where) => {
  if (typeof value !== 'string') {
    throw new SchemaError(where, `expected a string, got ${show(value)}`);
  }
};
const boolean: Check = (value, where) => {
  if (typeof value !== 'boolean') {
    throw new SchemaError(where, `expected a boolean, got ${show(value)}`);
  }
};
const nullable =
  (check: Check): Check =>
  (value, where, strict) => {
    if (value !== null) {
      check(value, where, strict);
    }
  };
const pair: Check = (value, where, strict) => {
  if (!Array.isArray(value) || value.length !== 2) {
    throw new SchemaError(where, `expected [low, high], got ${show(value)}`);
  }
  value.forEach((item, index) => number(item, `${where}[${index}]`, strict));
};
const oneOf =
  (...values: string[]): Check =>
  (value, where) => {
    if (typeof value !== 'string' || !values.includes(value)) {
      throw new SchemaError(
        where,
        `expected one of ${values.join(', ')}, got ${show(value)}`
      );
    }
  };
const recordOf =
  (check: Check): Check =>
  (value, where, strict) => {
    if (!isObject(value)) {
      throw new SchemaError(where, `expected an object, got ${show(value)}`);
    }
    for (const [key, item] of Object.entries(value)) {
      check(item, `${where}.${key}`, strict);
    }
  };
const stringMap = recordOf(string);
const array =
  (check: Check): Check =>
  (value, where, strict) => {
    if (!Array.isArray(value)) {
      throw new SchemaError(where, `expected a list, got ${show(value)}`);
    }
    value.forEach((item, index) => check(item, `${where}[${index}]`, strict));
  };

function object<T>(checks: Checks<T>): Check {
  return (value, where, strict) => {
    if (!isObject(value)) {
      throw new SchemaError(where, `expected an object, got ${show(value)}`);
    }
    for (const [key, check] of Object.entries(checks) as [string, Check][]) {
      if (!(key in value)) {
        throw new SchemaError(`${where}.${key}`, 'missing');
      }
      check(value[key], `${where}.${key}`, strict);
    }
    if (strict) {
      const unknown = Object.keys(value).filter(key => !(key in checks));
      if (unknown.length) {
        throw new SchemaError(where, `fields not in the interface: ${unknown}`);
      }
    }
  };
}

function show(value: unknown): string {
  const text = JSON.stringify(value);
  return text === undefined ? String(value) : text.slice(0, 60);
}

const components: Checks<IComponents> = {
  cpu: number,
  gpu: number,
  ram: number
};

const cellRecord = object<ICellRecord>({
  id: integer,
  cell_id: nullable(string),
  kernel_id: nullable(string),
  session_uuid: string,
  execution_count: nullable(integer),
  name: nullable(string),
  source: nullable(string),
  via: string,
  status: string,
  started_at: number,
  ended_at: number,
  duration_s: number,
  energy_j: object<IComponents>(components),
  power_w: object<IComponents & { total: number }>({
    ...components,
    total: number
  }),
  energy_kwh: number,
  energy_range_kwh: pair,
  emissions_g: number,
  emissions_range_g: pair,
  embodied_g: number,
  intensity: object<ICellRecord['intensity']>({
    g_per_kwh: number,
    source: string
  }),
  pue: number,
  mode: string,
  methods: stringMap,
  budget: nullable(string),
  remote: nullable(
    object<IRemotePart>({
      count: integer,
      estimated: integer,
      unestimated: integer,
      energy_kwh: number,
      energy_range_kwh: pair,
      emissions_g: number,
      emissions_range_g: pair,
      embodied_g: number,
      water_l: number,
      water_range_l: pair,
      method: string
    })
  ),
  totals_include_remote: boolean
});

const cellsPage = object<ICellsPage>({
  kernel_id: nullable(string),
  notebook_path: nullable(string),
  now: number,
  after: integer,
  limit: integer,
  last_id: integer,
  more: boolean,
  cells: array(cellRecord)
});

const prediction = object<IPrediction>({
  fraction: number,
  emissions_g: number,
  emissions_range_g: pair,
  eta_s: number
});

const totals: Checks<ITotals> = {
  energy_kwh: number,
  emissions_g: number,
  emissions_low_g: number,
  emissions_high_g: number,
  embodied_g: number
};

const kernelFigures = object<IKernelFigures>({
  kernel_id: string,
  notebook_path: nullable(string),
  now: number,
  tracker_state: oneOf('running', 'stopped', 'lost'),
  live: boolean,
  stale: boolean,
  age_s: number,
  stale_after_s: number,
  power_w: object<IPower>({ ...components, total: number }),
  totals: object<IKernelFigures['totals']>({
    ...totals,
    source: oneOf('heartbeat', 'cells'),
    n_cells: nullable(integer)
  }),
  intensity: object<IKernelFigures['intensity']>({
    g_per_kwh: number,
    source: string
  }),
  prediction: nullable(prediction),
  hint: nullable(object<IKernelHint>({ text: string })),
  heartbeat: nullable(
    object<IHeartbeat>({
      at: number,
      running_cell: nullable(string),
      running_cell_started_at: nullable(number)
    })
  ),
  session: object<IKernelSession>({
    session_uuid: string,
    host: string,
    pid: integer,
    started_at: number,
    ended_at: nullable(number),
    interval_s: number,
    mode: string,
    methods: stringMap,
    gpus: recordOf(object<IGpu>({ vendor: string, model: string }))
  }),
  budgets: array(
    object<IScopeBudget>({
      scope: oneOf('day', 'notebook'),
      budget: string,
      limit: number,
      spent: number,
      remaining: number,
      fraction: number,
      unit: oneOf('g', 'kWh'),
      on_exceed: oneOf('warn', 'stop')
    })
  ),
  remote: nullable(
    object<IRemoteTotals>({
      count: integer,
      unestimated: integer,
      energy_kwh: number,
      emissions_g: number,
      emissions_range_g: pair,
      water_l: number
    })
  ),
  totals_include_remote: boolean
});

/**
 * `value` as a kernel's figures; throws `SchemaError` saying where it differs.
 * With `strict`, fields the interface does not declare are errors too.
 */
export function checkKernelFigures(
  value: unknown,
  strict = false
): IKernelFigures {
  kernelFigures(value, 'kernel', strict);
  return value as IKernelFigures;
}

/**
 * `value` as a page of cells; throws `SchemaError` saying where it differs.
 * With `strict`, fields the interface does not declare are errors too.
 */
export function checkCellsPage(value: unknown, strict = false): ICellsPage {
  cellsPage(value, 'cells page', strict);
  return value as ICellsPage;
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
    prediction(value, 'prediction', false);
  } catch (error) {
    if (!warnedPrediction) {
      warnedPrediction = true;
      console.warn('carbon_magic: ignoring a malformed prediction', error);
    }
    return null;
  }
  return value as IPrediction;
}
