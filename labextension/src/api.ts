/**
 * Client of the server extension's REST endpoints (`carbon-magic/api/v1/...`).
 *
 * Units follow the server: watts, kWh, grams CO2e, gCO2e/kWh, seconds.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { IKernelHint } from './hint';
import { checkCellsPage, ICellsPage, IPrediction } from './schema';

/** Cumulative figures: facility energy and emissions with their range. */
export interface ITotals {
  energy_kwh: number;
  emissions_g: number;
  emissions_low_g: number;
  emissions_high_g: number;
  embodied_g: number;
}

/** Watts per component and their sum. */
export interface IPower {
  cpu: number;
  gpu: number;
  ram: number;
  total: number;
}

/** `GET carbon-magic/api/v1/kernels/{kernel_id}`. */
export interface IKernelFigures {
  kernel_id: string;
  notebook_path: string | null;
  now: number;
  tracker_state: 'running' | 'stopped';
  live: boolean;
  stale: boolean;
  age_s: number;
  stale_after_s: number;
  power_w: IPower;
  totals: ITotals & { source: 'heartbeat' | 'cells'; n_cells: number | null };
  intensity: { g_per_kwh: number; source: string };
  heartbeat: {
    at: number;
    running_cell: string | null;
    running_cell_started_at: number | null;
  } | null;
  session: {
    session_uuid: string;
    started_at: number;
    ended_at: number | null;
    interval_s: number;
    mode: string;
    methods: Record<string, string>;
  };
  /** The running cell's predicted completion, where the server sends one. */
  prediction?: IPrediction | null;
  /** The carbon-aware hint of the grid forecast; `null` without one or when not live. */
  hint?: IKernelHint | null;
}

/** `GET carbon-magic/api/v1/summary`. */
export interface ISummary {
  now: number;
  day_start: number;
  ledger: { path: string; exists: boolean };
  totals: { today: ITotals; all_time: ITotals };
  kernels_total: { power_w: IPower; today: ITotals; all_time: ITotals };
}

/** A kernel's answer: its figures, or `null` when it has no tracker (404). */
export type KernelAnswer = IKernelFigures | null;

function apiUrl(
  settings: ServerConnection.ISettings,
  ...parts: string[]
): string {
  return URLExt.join(settings.baseUrl, 'carbon-magic', 'api', 'v1', ...parts);
}

async function getJson(
  url: string,
  settings: ServerConnection.ISettings
): Promise<Response> {
  const response = await ServerConnection.makeRequest(url, {}, settings);
  return response;
}

/**
 * The figures of one kernel; `null` when the server says it has no tracker.
 *
 * Throws `ServerConnection.ResponseError` on any other failure (including a
 * server without the extension, which answers 404 with an HTML page).
 */
export async function fetchKernel(
  kernelId: string,
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<KernelAnswer> {
  const url = apiUrl(settings, 'kernels', encodeURIComponent(kernelId));
  const response = await getJson(url, settings);
  const isJson = (response.headers.get('Content-Type') ?? '').includes(
    'application/json'
  );
  if (response.status === 404 && isJson) {
    return null;
  }
  if (!response.ok || !isJson) {
    throw new ServerConnection.ResponseError(response);
  }
  return (await response.json()) as IKernelFigures;
}

/** The server's summary; "today" starts at the browser's local midnight. */
export async function fetchSummary(
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<ISummary> {
  const midnight = new Date();
  midnight.setHours(0, 0, 0, 0);
  const query = URLExt.objectToQueryString({
    day_start: String(midnight.getTime() / 1000)
  });
  const response = await getJson(apiUrl(settings, 'summary') + query, settings);
  if (!response.ok) {
    throw new ServerConnection.ResponseError(response);
  }
  return (await response.json()) as ISummary;
}

/**
 * One page of the cells recorded for the notebook at `path` (every kernel that ran
 * it, across restarts), recorded after the row id `after`, oldest first.
 *
 * Throws `ServerConnection.ResponseError` when the server fails, and
 * `SchemaError` when its answer does not have the shape of `ICellsPage`.
 */
export async function fetchNotebookCells(
  path: string,
  after: number,
  settings: ServerConnection.ISettings = ServerConnection.makeSettings(),
  limit = 100
): Promise<ICellsPage> {
  const query = URLExt.objectToQueryString({
    path,
    after: String(after),
    limit: String(limit)
  });
  const response = await getJson(apiUrl(settings, 'cells') + query, settings);
  if (!response.ok) {
    throw new ServerConnection.ResponseError(response);
  }
  return checkCellsPage(await response.json());
}
