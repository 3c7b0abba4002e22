/**
 * Texts shown for one recorded cell (its footer, its tooltip, its sidebar row) and
 * for a running cell's prediction. Pure functions: no DOM, no JupyterLab.
 */
import {
  formatAge,
  formatDuration,
  formatGrams,
  formatGramsRange,
  formatKwh,
  formatPercent,
  formatWatts,
  GRAMS,
  KWH,
  Unit,
  unitFor
} from './format';
import { ILiveFigures } from './live';
import { ICellRecord, IPrediction, IRemotePart } from './schema';

/** How footers are shown (the plugin settings of the same names). */
export interface IFooterSettings {
  /** Show footers under recorded cells. */
  footers: boolean;
  /** Hide the footer of cells whose emissions are below this many grams CO2e. */
  footerMinEmissionsG: number;
  /** Which figure comes first: emissions (CO₂e) or energy. */
  footerLead: 'emissions' | 'energy';
  /** Hide the footer of cells that ran for less than this many seconds. */
  footerMinSeconds: number;
  /** Hide the footer of cells that are only line magics (`%load_ext`, `%carbon …`). */
  footerHideMagics: boolean;
}

export const DEFAULT_FOOTER_SETTINGS: IFooterSettings = {
  footers: true,
  footerMinEmissionsG: 0,
  footerLead: 'emissions',
  footerMinSeconds: 1,
  footerHideMagics: true
};

/** One unit for the emissions and one for the energy of a view of several cells,
 * each chosen for the view's largest value. */
export interface ICellUnits {
  grams: Unit;
  kwh: Unit;
}

/** The units of a view showing `cells`. */
export function cellUnits(cells: Iterable<ICellRecord>): ICellUnits {
  const list = Array.from(cells);
  return {
    grams: unitFor(
      GRAMS,
      list.map(cell => cell.emissions_g)
    ),
    kwh: unitFor(
      KWH,
      list.map(cell => cell.energy_kwh)
    )
  };
}

/** Whether `source` is only line magics and comments (`%load_ext carbon_magic`,
 * `%carbon config …`): configuration, not work. A cell magic (`%%carbon`, `%%time`)
 * runs its body, so it is not. */
export function isPureMagic(source: string): boolean {
  const lines = source
    .split('\n')
    .map(line => line.trim())
    .filter(line => line && !line.startsWith('#'));
  return (
    lines.length > 0 &&
    lines.every(line => line.startsWith('%') && !line.startsWith('%%'))
  );
}

const COMPONENT_NAMES = ['cpu', 'gpu', 'ram'] as const;

/** Whether `cell` gets a footer under `settings`; `source` is the cell's source in
 * the notebook (else the ledger's first line is judged). */
export function showsFooter(
  cell: ICellRecord,
  settings: IFooterSettings,
  source: string | null = cell.source
): boolean {
  return (
    settings.footers &&
    cell.emissions_g >= settings.footerMinEmissionsG &&
    cell.duration_s >= settings.footerMinSeconds &&
    !(settings.footerHideMagics && source !== null && isPureMagic(source))
  );
}

/** The footer line: `⚡ 4.2 mg CO₂e · 11 mWh · 12.1 s` (or energy first), in the
 * view's `units` where given (else each figure's own). */
export function footerText(
  cell: ICellRecord,
  lead: IFooterSettings['footerLead'] = 'emissions',
  units?: ICellUnits
): string {
  const grams = `${formatGrams(cell.emissions_g, units?.grams)} CO₂e`;
  const energy = formatKwh(cell.energy_kwh, units?.kwh);
  const figures = lead === 'energy' ? [energy, grams] : [grams, energy];
  const status = cell.status === 'ok' ? [] : [cell.status];
  return `⚡ ${[...figures, formatDuration(cell.duration_s), ...status].join(' · ')}`;
}

/** The footer's tooltip: ranges, methods, grid intensity and its source, embodied share. */
export function footerTitle(cell: ICellRecord, now?: number): string {
  const [lowG, highG] = cell.emissions_range_g;
  const [lowKwh, highKwh] = cell.energy_range_kwh;
  const methods = COMPONENT_NAMES.map(name => {
    const method = cell.methods[name];
    const watts = formatWatts(cell.power_w[name]);
    return `${name.toUpperCase()} ${watts}${method ? ` ${method}` : ''}`;
  }).join(' · ');
  const total = cell.emissions_g + cell.embodied_g;
  const share = total > 0 ? formatPercent(cell.embodied_g / total) : '0%';
  const ended =
    now === undefined
      ? new Date(cell.ended_at * 1000).toLocaleString()
      : `${formatAge(Math.max(0, now - cell.ended_at))} ago`;
  return [
    `Emissions ${formatGramsRange(cell.emissions_g, lowG, highG)} CO₂e (operational)`,
    `Energy ${formatKwh(cell.energy_kwh)} (${formatKwh(lowKwh)}–${formatKwh(highKwh)}), facility, PUE ${cell.pue}`,
    `Mean power ${formatWatts(cell.power_w.total)}: ${methods}`,
    `Grid ${Math.round(cell.intensity.g_per_kwh)} g/kWh · ${cell.intensity.source}`,
    `Embodied ${formatGrams(cell.embodied_g)} CO₂e (manufacturing, amortised; ${share} of operational + embodied), not in the figure above`,
    `${formatDuration(cell.duration_s)}, ${cell.status}, ${cell.mode} mode, ended ${ended}`,
    ...(cell.remote ? [remoteLine(cell.remote)] : []),
    'From the carbon_magic ledger (cell recorded by the kernel).'
  ].join('\n');
}

/** The remote (estimated) line: hosted LLM calls, never added to the local figures. */
export function remoteLine(remote: IRemotePart): string {
  const [low, high] = remote.emissions_range_g;
  const calls = `${remote.count} LLM call${remote.count === 1 ? '' : 's'}`;
  const figures = remote.estimated
    ? ` · ${formatKwh(remote.energy_kwh)} · ${formatGramsRange(remote.emissions_g, low, high)} CO₂e`
    : '';
  const missing = remote.unestimated
    ? ` · ${remote.unestimated} without estimate`
    : '';
  return `Remote (estimated, not included above): ${calls}${figures}${missing}`;
}

/** A running cell's prediction: `≈ 42% · ≈ 3.1 g (2.5–4 g) CO₂e at the end · 1 min 5 s left`. */
export function predictionText(prediction: IPrediction): string {
  const [low, high] = prediction.emissions_range_g;
  return [
    `≈ ${formatPercent(prediction.fraction)}`,
    `${formatGramsRange(prediction.emissions_g, low, high)} CO₂e at the end`,
    `${formatDuration(Math.max(0, prediction.eta_s))} left`
  ].join(' · ');
}

/** The tooltip of a prediction: how it was obtained. */
export const PREDICTION_TITLE =
  'Predicted by the kernel from this cell so far: the fraction done, the emissions of the whole cell with their range, and the time left.';

/** The running cell's footer: `⚡ running · 12 s · 2.5 W now`, then its prediction
 * (`· ≈ 42% · … · 6 s left`) where the kernel makes one; `live` is null when the
 * kernel's figures are not this cell's (another notebook's kernel, not yet known). */
export function runningText(
  elapsedS: number,
  live: ILiveFigures | null
): string {
  const parts = [`⚡ running · ${formatDuration(Math.max(0, elapsedS))}`];
  if (live) {
    parts.push(`${formatWatts(live.figures.power_w.total)} now`);
    if (live.prediction) {
      parts.push(predictionText(live.prediction));
    }
  }
  return parts.join(' · ');
}
