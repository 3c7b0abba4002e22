/**
 * The status-bar item (`⚡ 38 W · 2.1 g CO₂e`) and its popup of details.
 */
import { Widget } from '@lumino/widgets';

import { ISummary } from './api';
import { capBar, capName, dayCap, dayLeft, IDayLeft } from './caps';
import {
  formatAge,
  formatDuration,
  formatGrams,
  formatGramsRange,
  formatKwh,
  formatPercent,
  formatWatts
} from './format';
import { predictionText } from './cellformat';
import { gpuRowText } from './gpus';
import { ILiveFigures, liveFigures } from './live';
import { CarbonModel, Status } from './model';

export const LOAD_HINT = 'carbon: %load_ext carbon_magic';

/** The one-line text and tooltip for a status; `live` carries its figures to now. */
export function statusText(
  status: Status,
  live: ILiveFigures | null = status.kind === 'figures'
    ? liveFigures(status.figures, 0)
    : null
): { text: string; title: string } {
  switch (status.kind) {
    case 'idle':
      return { text: '', title: '' };
    case 'untracked':
      return {
        text: LOAD_HINT,
        title:
          'This kernel is not measured. Run %load_ext carbon_magic in the notebook to record every cell.'
      };
    case 'error':
      return {
        text: 'carbon: ?',
        title: `The carbon figures are unavailable: ${status.message}`
      };
    case 'figures':
      return figuresText(live ?? liveFigures(status.figures, 0));
  }
}

function figuresText(live: ILiveFigures): { text: string; title: string } {
  const figures = live.figures;
  const grams = `${formatGrams(figures.totals.emissions_g)} CO₂e`;
  if (figures.tracker_state === 'lost') {
    return {
      text: LOAD_HINT,
      title: `No news from the tracker of this kernel for ${formatAge(figures.age_s)}: its kernel is taken as gone (it recorded ${grams}). Run %load_ext carbon_magic to measure again.`
    };
  }
  if (figures.tracker_state !== 'running') {
    return {
      text: LOAD_HINT,
      title: `The tracker of this kernel stopped (it recorded ${grams}). Run %load_ext carbon_magic to measure again.`
    };
  }
  if (!figures.live) {
    return {
      text: `⚡ – W · ${grams}`,
      title: `No news from the kernel's tracker for ${formatAge(figures.age_s)}: the kernel may be busy or gone. Click for details.`
    };
  }
  const prediction = live.prediction;
  const running = prediction ? ` · ${formatPercent(prediction.fraction)}` : '';
  return {
    text: `⚡ ${formatWatts(figures.power_w.total)} · ${grams}${running}`,
    title:
      'Power now and emissions so far of this kernel' +
      (prediction
        ? `; the running cell: ${predictionText(prediction)} (predicted by the kernel)`
        : '') +
      '. Click for details.'
  };
}

/** The status-bar item: a text that opens the details popup when clicked. */
export class CarbonStatusItem extends Widget {
  constructor(private readonly _model: CarbonModel) {
    super();
    this.addClass('jp-StatusBar-TextItem');
    this.addClass('cm-StatusItem');
    this.addClass('jp-mod-highlighted');
    this._model.changed.connect(this._update, this);
    this._model.clock.connect(this._update, this);
    this._update();
  }

  private _update(): void {
    const { text, title } = statusText(this._model.status, this._model.live);
    const status = this._model.status;
    const left = dayLeftOf(status);
    this.node.textContent = text;
    this.node.title = left ? `${title}\n${left.label}` : title;
    if (left) {
      // The day cap's part in its own span: coloured near the cap and once spent.
      this.node.append(' · ');
      const part = document.createElement('span');
      part.className = `cm-StatusItem-day cm-mod-${left.level}`;
      part.textContent = left.text;
      this.node.appendChild(part);
      this.node.setAttribute('aria-label', `${text} · ${left.label}`);
    } else {
      this.node.removeAttribute('aria-label');
    }
    this.toggleClass(
      'cm-mod-stale',
      status.kind === 'figures' && !status.figures.live
    );
    this.toggleClass(
      'cm-mod-hint',
      status.kind === 'untracked' ||
        (status.kind === 'figures' &&
          status.figures.tracker_state !== 'running')
    );
  }
}

/** What the status item says of the day cap: only for a running tracker with one. */
export function dayLeftOf(status: Status): IDayLeft | null {
  if (status.kind !== 'figures' || status.figures.tracker_state !== 'running') {
    return null;
  }
  const cap = dayCap(status.figures.budgets);
  return cap ? dayLeft(cap) : null;
}

type Row = [label: string, value: string | HTMLElement, className?: string];

/** The popup body: every figure of the kernel, and the server's total today. */
export class CarbonPopupBody extends Widget {
  constructor(private readonly _model: CarbonModel) {
    super();
    this.addClass('cm-Popup');
    this._model.changed.connect(this._update, this);
    this._model.clock.connect(this._update, this);
    this._update();
  }

  dispose(): void {
    this._model.changed.disconnect(this._update, this);
    this._model.clock.disconnect(this._update, this);
    super.dispose();
  }

  private _update(): void {
    const status = this._model.status;
    const rows: Row[] = [];
    let heading = 'Carbon of this kernel';
    let fullPath = '';
    const live = this._model.live;
    if (status.kind === 'figures' && live) {
      rows.push(...kernelRows(live));
      fullPath = status.figures.notebook_path ?? '';
      heading = fullPath.split('/').pop() || heading;
    } else if (status.kind === 'untracked') {
      rows.push(['Tracker', 'none: run %load_ext carbon_magic', 'cm-state']);
    } else if (status.kind === 'error') {
      rows.push(['Error', status.message, 'cm-state']);
    } else {
      rows.push(['Kernel', 'not started', 'cm-state']);
    }
    rows.push(...summaryRows(this._model.summary));
    render(this.node, heading, rows);
    this.node.title = fullPath;
  }
}

function kernelRows(live: ILiveFigures): Row[] {
  const figures = live.figures;
  const power = figures.power_w;
  const totals = figures.totals;
  const methods = figures.session.methods;
  const method = (name: string) => (methods[name] ? ` (${methods[name]})` : '');
  const gpu = gpuRowText(figures);
  let state: string;
  if (figures.tracker_state === 'lost') {
    state = `lost: silent for ${formatAge(figures.age_s)}`;
  } else if (figures.tracker_state !== 'running') {
    state = 'stopped';
  } else if (figures.stale) {
    state = `stale: no heartbeat for ${formatAge(live.ageS)}`;
  } else {
    // Within the wait the kernel declared for its next heartbeat: current, no age.
    state = live.running ? 'live' : 'live (kernel idle)';
  }
  const rows: Row[] = [
    ['Power now', formatWatts(power.total), 'cm-watts'],
    ['  CPU', formatWatts(power.cpu) + method('cpu')],
    // A GPU row only where the kernel's machine has GPUs: watts, then which ones.
    ...(gpu === null ? [] : [['  GPU', gpu, 'cm-gpu'] as Row]),
    ['  RAM', formatWatts(power.ram) + method('ram')],
    ['Energy', formatKwh(totals.energy_kwh), 'cm-energy'],
    [
      'Emissions',
      `${formatGramsRange(
        totals.emissions_g,
        totals.emissions_low_g,
        totals.emissions_high_g
      )} CO₂e`,
      'cm-emissions'
    ],
    ['Embodied', `${formatGrams(totals.embodied_g)} CO₂e`, 'cm-embodied'],
    [
      'Grid',
      `${Math.round(figures.intensity.g_per_kwh)} g/kWh · ${figures.intensity.source}`,
      'cm-intensity'
    ],
    ['Tracker', state, 'cm-state']
  ];
  const ledgerBytes = figures.heartbeat?.ledger_bytes;
  if (typeof ledgerBytes === 'number') {
    rows.push([
      'Ledger',
      `${formatMegabytes(ledgerBytes)} on disk`,
      'cm-ledger'
    ]);
  }
  if (live.running && figures.heartbeat?.running_cell) {
    const since =
      live.runningForS === null ? '' : ` · ${formatDuration(live.runningForS)}`;
    rows.push([
      'Running',
      figures.heartbeat.running_cell + since,
      'cm-running'
    ]);
  }
  const prediction = live.prediction;
  if (prediction) {
    rows.push(['Predicted', predictionText(prediction), 'cm-prediction']);
  }
  const remote = figures.remote;
  if (remote) {
    const [low, high] = remote.emissions_range_g;
    const missing = remote.unestimated
      ? ` · ${remote.unestimated} without estimate`
      : '';
    rows.push([
      'Remote (estimated)',
      `${remote.count} LLM calls · ${formatGramsRange(remote.emissions_g, low, high)} CO₂e, not in the figures above${missing}`,
      'cm-remote'
    ]);
  }
  // The notebook and day caps, as bars, next to the day's total below.
  for (const cap of figures.budgets) {
    rows.push([capName(cap), capBar(cap), 'cm-cap']);
  }
  return rows;
}

/** A size in bytes as megabytes, e.g. `12.3 MB` (`< 0.1 MB` below that). */
function formatMegabytes(bytes: number): string {
  const megabytes = bytes / 1e6;
  return `${megabytes < 0.1 ? '< 0.1' : megabytes.toFixed(1)} MB`;
}

function summaryRows(summary: ISummary | null): Row[] {
  if (!summary) {
    return [['Today, all kernels', '…', 'cm-today']];
  }
  const today = summary.totals.today;
  return [
    [
      'Today, all kernels',
      `${formatGrams(today.emissions_g)} CO₂e · ${formatKwh(today.energy_kwh)}`,
      'cm-today'
    ]
  ];
}

function render(node: HTMLElement, heading: string, rows: Row[]): void {
  const title = document.createElement('div');
  title.className = 'cm-Popup-heading';
  title.textContent = heading;
  const table = document.createElement('table');
  table.className = 'cm-Popup-table';
  for (const [label, value, className] of rows) {
    const row = table.insertRow();
    if (className) {
      row.className = className;
    }
    const th = document.createElement('th');
    th.textContent = label;
    row.appendChild(th);
    const cell = row.insertCell();
    if (typeof value === 'string') {
      cell.textContent = value;
    } else {
      cell.appendChild(value);
    }
  }
  node.replaceChildren(title, table);
}
