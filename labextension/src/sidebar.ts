/**
 * The Carbon sidebar (`carbon-magic-sidebar`): for the notebook in front of the user,
 * its recorded cells sortable by emissions, a power timeline with the cells' spans,
 * the kernel session's totals and the notebook's, and the carbon-aware hint of the
 * kernel's grid forecast when there is one. Follows tab switches.
 */
import { Cell } from '@jupyterlab/cells';
import { NotebookPanel } from '@jupyterlab/notebook';
import { Widget } from '@lumino/widgets';

import type { Message } from '@lumino/messaging';

import { capBar } from './caps';
import { cellUnits, footerTitle } from './cellformat';
import { NotebookCells } from './cells';
import { everydayComparison } from './comparison';
import {
  formatDuration,
  formatGrams,
  formatGramsRange,
  formatKwh,
  formatWatts
} from './format';
import { hintView } from './hint';
import { CarbonModel } from './model';
import { ICellRecord } from './schema';
import { IPowerSample, timelineSvg } from './timeline';

/** The id of the sidebar panel (its tab, the layout restorer, the palette command). */
export const SIDEBAR_ID = 'carbon-magic-sidebar';
const MAX_SAMPLES = 300;

type SortKey = 'order' | 'emissions';

interface IRow {
  index: number;
  cell: Cell;
  record: ICellRecord;
}

export class CarbonSidebar extends Widget {
  constructor(private readonly _model: CarbonModel) {
    super();
    this.id = `${SIDEBAR_ID}-content`;
    this.addClass('cm-Sidebar');
    this.node.setAttribute('aria-label', 'Carbon of the notebook');
    this._model.changed.connect(this._onFigures, this);
    this._render();
  }

  /** Follow `panel` (the current notebook) and its recorded cells, or nothing. */
  follow(panel: NotebookPanel | null, cells: NotebookCells | null): void {
    if (panel === this._panel) {
      return;
    }
    this._cells?.changed.disconnect(this._schedule, this);
    this._panel?.content.model?.cells.changed.disconnect(this._schedule, this);
    this._panel = panel;
    this._cells = cells;
    this._samples = [];
    cells?.changed.connect(this._schedule, this);
    panel?.content.model?.cells.changed.connect(this._schedule, this);
    this._schedule();
  }

  /** Fetch the cells and the kernel's figures again now. */
  refresh(): void {
    void this._cells?.refresh();
    void this._model.refresh();
  }

  protected onResize(msg: Widget.ResizeMessage): void {
    super.onResize(msg);
    this._schedule(); // the timeline is drawn at the sidebar's width
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._schedule();
  }

  dispose(): void {
    this.follow(null, null);
    this._model.changed.disconnect(this._onFigures, this);
    super.dispose();
  }

  private _onFigures(): void {
    const status = this._model.status;
    if (status.kind === 'figures' && status.figures.live) {
      const at = status.figures.heartbeat?.at ?? status.figures.now;
      const last = this._samples[this._samples.length - 1];
      if (!last || last.at < at) {
        this._samples.push({ at, watts: status.figures.power_w.total });
        this._samples.splice(0, this._samples.length - MAX_SAMPLES);
      }
    }
    this._schedule();
  }

  private _schedule(): void {
    if (this._pending) {
      return;
    }
    this._pending = true;
    requestAnimationFrame(() => {
      this._pending = false;
      if (!this.isDisposed) {
        this._render();
      }
    });
  }

  private _rows(): IRow[] {
    const panel = this._panel;
    const cells = this._cells;
    if (!panel || !cells) {
      return [];
    }
    const rows: IRow[] = [];
    panel.content.widgets.forEach((cell, index) => {
      const record = cells.byCellId.get(cell.model.id);
      if (cell.model.type === 'code' && record) {
        rows.push({ index, cell, record });
      }
    });
    if (this._sort === 'emissions') {
      rows.sort((a, b) => b.record.emissions_g - a.record.emissions_g);
    }
    return rows;
  }

  private _render(): void {
    const heading = document.createElement('h3');
    heading.className = 'cm-Sidebar-heading';
    const panel = this._panel;
    const where = panel?.context.localPath ?? '';
    heading.textContent = where.split('/').pop() || 'Carbon';
    heading.title = where;
    if (!panel) {
      const empty = paragraph(
        'cm-Sidebar-empty',
        'Open a notebook to see what its cells cost.'
      );
      this.node.replaceChildren(heading, empty);
      return;
    }
    const rows = this._rows();
    // Keep the keyboard focus on the same control across the re-render.
    const focused = this.node.contains(document.activeElement)
      ? (document.activeElement as HTMLElement)
      : null;
    const key = focused?.dataset.cellId ?? focused?.dataset.sort;
    this.node.replaceChildren(
      heading,
      this._totals(rows),
      this._timeline(),
      this._sortControls(),
      this._list(rows)
    );
    if (key) {
      const again = Array.from(
        this.node.querySelectorAll<HTMLElement>('[data-cell-id], [data-sort]')
      ).find(node => (node.dataset.cellId ?? node.dataset.sort) === key);
      again?.focus();
    }
  }

  private _totals(rows: IRow[]): HTMLElement {
    const section = document.createElement('section');
    section.className = 'cm-Sidebar-totals';
    section.setAttribute('aria-label', 'Totals');
    const status = this._model.status;
    if (status.kind === 'figures') {
      const totals = status.figures.totals;
      const now = status.figures.live
        ? `${formatWatts(status.figures.power_w.total)} now · `
        : '';
      const line = paragraph(
        'cm-Sidebar-session',
        `Kernel session: ${now}${formatGramsRange(
          totals.emissions_g,
          totals.emissions_low_g,
          totals.emissions_high_g
        )} CO₂e · ${formatKwh(totals.energy_kwh)} · +${formatGrams(totals.embodied_g)} embodied`
      );
      line.title = `Since the tracker started in this kernel (${totals.source === 'heartbeat' ? 'its latest heartbeat' : 'the sum of its cells'}); grid ${Math.round(status.figures.intensity.g_per_kwh)} g/kWh · ${status.figures.intensity.source}.`;
      section.appendChild(line);
      if (status.figures.budgets.length) {
        const caps = document.createElement('div');
        caps.className = 'cm-Sidebar-caps';
        caps.setAttribute('role', 'group');
        caps.setAttribute('aria-label', 'Notebook and day budgets');
        caps.append(...status.figures.budgets.map(cap => capBar(cap, true)));
        section.appendChild(caps);
      }
      const hint = hintView(status.figures);
      if (hint) {
        // Text only: the hint comes from the ledger, never as markup.
        const note = paragraph('cm-Sidebar-hint', hint.text);
        note.setAttribute('role', 'note');
        note.setAttribute('aria-label', hint.label);
        note.title = hint.title;
        section.appendChild(note);
      }
    } else if (status.kind === 'untracked') {
      section.appendChild(
        paragraph(
          'cm-Sidebar-session',
          'This kernel is not measured: run %load_ext carbon_magic.'
        )
      );
    }
    const sum = rows.reduce(
      (acc, { record }) => {
        acc.g += record.emissions_g;
        acc.low += record.emissions_range_g[0];
        acc.high += record.emissions_range_g[1];
        acc.kwh += record.energy_kwh;
        return acc;
      },
      { g: 0, low: 0, high: 0, kwh: 0 }
    );
    const line = paragraph(
      'cm-Sidebar-notebook',
      `Cells listed: ${rows.length} · ${formatGramsRange(sum.g, sum.low, sum.high)} CO₂e · ${formatKwh(sum.kwh)}`
    );
    line.title =
      'The sum of the latest recorded run of each cell listed below (from the ledger).';
    section.appendChild(line);
    const comparison = everydayComparison(sum.g);
    if (comparison) {
      const compared = paragraph('cm-Sidebar-comparison', comparison.text);
      compared.title = `The notebook's cells, as a car trip. ${comparison.source}`;
      section.appendChild(compared);
    }
    if (this._cells?.error) {
      section.appendChild(
        paragraph(
          'cm-Sidebar-error',
          `The cells are unavailable: ${this._cells.error}`
        )
      );
    }
    return section;
  }

  private _timeline(): Element {
    const records = this._cells?.records ?? [];
    const session = records[records.length - 1]?.session_uuid;
    const cells = records.filter(r => r.session_uuid === session).slice(-50);
    const status = this._model.status;
    const samples =
      status.kind === 'figures' &&
      status.figures.session.session_uuid === session
        ? this._samples
        : [];
    const width = Math.max(160, Math.round(this.node.clientWidth - 22));
    return timelineSvg(cells, samples, label, {
      width,
      intervalS:
        status.kind === 'figures' ? status.figures.session.interval_s : 1
    });
  }

  private _sortControls(): HTMLElement {
    const group = document.createElement('div');
    group.className = 'cm-Sidebar-sort';
    group.setAttribute('role', 'group');
    group.setAttribute('aria-label', 'Sort the cells');
    for (const [key, text] of [
      ['order', 'In order'],
      ['emissions', 'Most CO₂e']
    ] as [SortKey, string][]) {
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'jp-mod-styled cm-Sidebar-sortButton';
      button.dataset.sort = key;
      button.textContent = text;
      button.setAttribute('aria-pressed', String(this._sort === key));
      button.addEventListener('click', () => {
        button.focus(); // a click on some browsers does not focus a button
        this._sort = key;
        this._render();
      });
      group.appendChild(button);
    }
    return group;
  }

  private _list(rows: IRow[]): HTMLElement {
    const list = document.createElement('ol');
    list.className = 'cm-Sidebar-cells';
    list.setAttribute('aria-label', 'Recorded cells');
    if (!rows.length) {
      const item = document.createElement('li');
      item.className = 'cm-Sidebar-empty';
      item.textContent = 'No recorded cells in this notebook yet.';
      list.appendChild(item);
    }
    // One unit per view: the rows' figures in the units of the largest of them.
    const units = cellUnits(rows.map(({ record }) => record));
    const largest = Math.max(
      0,
      ...rows.map(({ record }) => record.emissions_g)
    );
    for (const { cell, record } of rows) {
      const item = document.createElement('li');
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'cm-Sidebar-cell';
      button.dataset.cellId = cell.model.id;
      button.title = `${footerTitle(record)}\nClick to go to the cell.`;
      // The kernel's execution count of this record, as the notebook's prompt shows it.
      const count = record.execution_count;
      const where = span(
        'cm-Sidebar-index',
        count === null ? '[ ]' : `[${count}]`
      );
      const source = span('cm-Sidebar-source', label(record));
      const share = shareBar(largest > 0 ? record.emissions_g / largest : 0);
      const figures = span(
        'cm-Sidebar-figures',
        `${formatGrams(record.emissions_g, units.grams)} CO₂e · ${formatKwh(record.energy_kwh, units.kwh)} · ${formatDuration(record.duration_s)}`
      );
      button.append(where, source, share, figures);
      button.setAttribute(
        'aria-label',
        `Cell${count === null ? '' : ` [${count}]`}, ${label(record)}: ${figures.textContent}. Go to the cell.`
      );
      button.addEventListener('click', () => this._goTo(cell));
      item.appendChild(button);
      list.appendChild(item);
    }
    return list;
  }

  private _goTo(cell: Cell): void {
    const notebook = this._panel?.content;
    if (!notebook) {
      return;
    }
    const index = notebook.widgets.indexOf(cell);
    if (index < 0) {
      return;
    }
    // Select the cell in command mode, and give the notebook the focus, so the keys
    // that follow act on the cell, not in its editor. Command mode first: a notebook in
    // edit mode would focus the new active cell's editor.
    notebook.mode = 'command';
    notebook.activeCellIndex = index;
    notebook.deselectAll();
    void notebook.scrollToCell(cell, 'center');
    notebook.node.focus();
    // The focus makes the shell activate the notebook, which asks (in the next frame)
    // its active cell to take the focus: command mode again after that.
    requestAnimationFrame(() => {
      if (!notebook.isDisposed && notebook.activeCellIndex === index) {
        notebook.mode = 'command';
        notebook.node.focus();
      }
    });
  }

  private _panel: NotebookPanel | null = null;
  private _cells: NotebookCells | null = null;
  private _samples: IPowerSample[] = [];
  private _sort: SortKey = 'order';
  private _pending = false;
}

function label(record: ICellRecord): string {
  return record.name || record.source || `cell ${record.execution_count ?? ''}`;
}

/** A bar of `share` (0–1) of the largest row's emissions; decoration only (the
 * figures beside it say the same in words). */
function shareBar(share: number): HTMLElement {
  const track = span('cm-Share', '');
  track.setAttribute('aria-hidden', 'true');
  const fill = span('cm-Share-fill', '');
  fill.style.width = `${Math.round(Math.min(1, Math.max(0, share)) * 1000) / 10}%`;
  track.appendChild(fill);
  return track;
}

function paragraph(className: string, text: string): HTMLElement {
  const node = document.createElement('p');
  node.className = className;
  node.textContent = text;
  return node;
}

function span(className: string, text: string): HTMLElement {
  const node = document.createElement('span');
  node.className = className;
  node.textContent = text;
  return node;
}
