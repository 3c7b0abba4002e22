/**
 * Client of the server extension's REST endpoints (`carbon-magic/api/v1/...`).
 *
 * Units follow the server: watts, kWh, grams CO2e, gCO2e/kWh, seconds.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import {
  checkCellsPage,
  checkKernelFigures,
  checkSummary,
  ICellsPage,
  IKernelFigures,
  ISummary
} from './schema';

export type { IKernelFigures, IPower, ISummary, ITotals } from './schema';

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
 * server without the extension, which answers 404 with an HTML page), and
 * `SchemaError` when its answer does not have the shape of `IKernelFigures`.
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
  return checkKernelFigures(await response.json());
}

/**
 * The server's summary; "today" starts at the browser's local midnight.
 *
 * Throws `ServerConnection.ResponseError` when the server fails, and
 * `SchemaError` when its answer does not have the shape of `ISummary`.
 */
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
  return checkSummary(await response.json());
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
