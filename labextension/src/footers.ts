/**
 * Footers under a notebook's recorded code cells (`⚡ 4.2 mg CO₂e · 11 mWh · 12.1 s`),
 * matched by cell id to the ledger's records, and the running cell's live footer.
 *
 * A footer is a plain text node appended to the cell's node (like execute-time
 * lines are): cell sources and statuses are always set as text, never as HTML.
 * The footers of one notebook are one tab stop: the arrow keys move between them.
 */
import { Cell } from '@jupyterlab/cells';
import { Notebook, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { IDisposable } from '@lumino/disposable';
import { Signal } from '@lumino/signaling';

import {
  cellUnits,
  DEFAULT_FOOTER_SETTINGS,
  footerText,
  footerTitle,
  IFooterSettings,
  PREDICTION_TITLE,
  runningText,
  showsFooter
} from './cellformat';
import { NotebookCells } from './cells';
import { ILiveFigures } from './live';
import { ICellRecord } from './schema';

export const FOOTER_CLASS = 'cm-CellFooter';
// A record that ended this long (seconds) before its cell began again is the earlier
// run's (the browser's and the kernel's clocks are the same machine's, or near).
const EARLIER_RUN_SLACK_S = 1;

export class CellFooters implements IDisposable {
  constructor(
    private readonly _panel: NotebookPanel,
    private readonly _cells: NotebookCells
  ) {
    _cells.changed.connect(this.update, this);
    NotebookActions.executionScheduled.connect(this._onScheduled, this);
    NotebookActions.executed.connect(this._onExecuted, this);
    void _panel.context.ready.then(() => {
      if (!this._disposed) {
        _panel.content.model?.cells.changed.connect(this._onCellsChanged, this);
        this.update();
      }
    });
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  /** The settings in force (they apply at once). */
  set settings(value: IFooterSettings) {
    this._settings = value;
    this.update();
  }

  /** The kernel's live figures (the same the status item shows), or null. */
  set live(value: ILiveFigures | null) {
    this._live = value;
    this._updateRunning();
  }

  /** The cell executing now in this notebook, as far as this page scheduled it. */
  get runningCell(): Cell | null {
    return this._queue.find(cell => !cell.isDisposed) ?? null;
  }

  /** Draw every footer from the records and settings. */
  update(): void {
    if (this._disposed) {
      return;
    }
    const running = this.runningCell;
    const shown: [Cell, ICellRecord][] = [];
    for (const cell of this._panel.content.widgets) {
      if (cell.model.type !== 'code' || cell === running) {
        continue;
      }
      const record = this._cells.byCellId.get(cell.model.id);
      const ranAt = this._ranAt.get(cell.model.id);
      const earlier =
        record !== undefined &&
        ranAt !== undefined &&
        record.ended_at < ranAt - EARLIER_RUN_SLACK_S;
      if (earlier && this._awaiting.has(cell)) {
        continue; // its record is being fetched: keep what it shows meanwhile
      }
      const source = cell.model.sharedModel.getSource();
      if (record && !earlier && showsFooter(record, this._settings, source)) {
        shown.push([cell, record]);
      } else {
        footerOf(cell)?.remove();
      }
    }
    // One unit for the notebook's footers, chosen for the largest of them.
    const units = cellUnits(shown.map(([, record]) => record));
    const largest = Math.max(
      0,
      ...shown.map(([, record]) => record.emissions_g)
    );
    for (const [cell, record] of shown) {
      const node = this._show(
        cell,
        footerText(record, this._settings.footerLead, units),
        footerTitle(record),
        largest > 0 ? record.emissions_g / largest : 0
      );
      node.classList.remove('cm-mod-running');
      node.setAttribute('data-record-id', String(record.id));
    }
    this._updateRunning();
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    clearInterval(this._timer);
    NotebookActions.executionScheduled.disconnect(this._onScheduled, this);
    NotebookActions.executed.disconnect(this._onExecuted, this);
    Signal.disconnectReceiver(this);
    for (const cell of this._panel.content.widgets) {
      footerOf(cell)?.remove();
    }
  }

  /** The running cell's footer: this run's time, the kernel's power now and its
   * prediction; shown once the cell has run for the threshold (or is predicted). */
  private _updateRunning(): void {
    const cell = this.runningCell;
    if (this._disposed || !cell) {
      return;
    }
    const ranAt = this._ranAt.get(cell.model.id);
    const elapsedS = ranAt === undefined ? 0 : Date.now() / 1000 - ranAt;
    const live = this._live?.running ? this._live : null;
    const due =
      this._settings.footers &&
      (elapsedS >= this._settings.footerMinSeconds || live?.prediction);
    if (!due) {
      footerOf(cell)?.remove(); // never the previous run's figures
      return;
    }
    const node = this._show(
      cell,
      runningText(elapsedS, live),
      live?.prediction ? PREDICTION_TITLE : 'This cell is running.'
    );
    node.classList.add('cm-mod-running');
    node.removeAttribute('data-record-id');
  }

  /** Show `text` under `cell`, after a bar of its `share` of the notebook's
   * largest cell (none while it runs). */
  private _show(
    cell: Cell,
    text: string,
    title: string,
    share: number | null = null
  ): HTMLElement {
    let node = footerOf(cell);
    if (!node) {
      node = document.createElement('div');
      node.className = FOOTER_CLASS;
      node.setAttribute('role', 'note');
      node.addEventListener('keydown', event => this._onKey(event));
      node.addEventListener('focus', () => this._rove(node!));
      const bar = document.createElement('span');
      bar.className = 'cm-Share';
      bar.setAttribute('aria-hidden', 'true');
      bar.appendChild(document.createElement('span')).className =
        'cm-Share-fill';
      const words = document.createElement('span');
      words.className = 'cm-CellFooter-text';
      node.append(bar, words);
      cell.node.appendChild(node);
      this._rove(null);
    }
    const bar = node.querySelector<HTMLElement>(':scope > .cm-Share')!;
    bar.hidden = share === null;
    const fill = bar.firstElementChild as HTMLElement;
    fill.style.width = `${Math.round(Math.min(1, Math.max(0, share ?? 0)) * 1000) / 10}%`;
    const words = node.querySelector<HTMLElement>(
      ':scope > .cm-CellFooter-text'
    )!;
    if (words.textContent !== text) {
      words.textContent = text;
    }
    node.title = title;
    node.setAttribute('aria-label', `Carbon of this cell: ${text}`);
    node.setAttribute('aria-description', title);
    return node;
  }

  /** Make `current` (else the first footer) the notebook's one tabbable footer. */
  private _rove(current: HTMLElement | null): void {
    const nodes = this._footerNodes();
    const keep = current ?? nodes.find(node => node.tabIndex === 0) ?? nodes[0];
    for (const node of nodes) {
      node.tabIndex = node === keep ? 0 : -1;
    }
  }

  private _onKey(event: KeyboardEvent): void {
    const steps: Record<string, number> = { ArrowDown: 1, ArrowUp: -1 };
    const step = steps[event.key];
    if (!step) {
      return;
    }
    const nodes = this._footerNodes();
    const at = nodes.indexOf(event.currentTarget as HTMLElement);
    const next = nodes[at + step];
    if (next) {
      event.preventDefault();
      event.stopPropagation(); // not the notebook's own arrow keys
      next.focus();
    }
  }

  private _footerNodes(): HTMLElement[] {
    return this._panel.content.widgets
      .map(cell => footerOf(cell))
      .filter((node): node is HTMLElement => node !== null);
  }

  private _onCellsChanged(): void {
    // Cells added (pasted, undone) may already have records; removed ones take
    // their footers with them.
    requestAnimationFrame(() => this.update());
  }

  private _onScheduled(_: unknown, args: { notebook: Notebook; cell: Cell }) {
    if (args.notebook !== this._panel.content) {
      return;
    }
    this._queue.push(args.cell);
    this._started();
  }

  private _onExecuted(_: unknown, args: { notebook: Notebook; cell: Cell }) {
    if (args.notebook !== this._panel.content) {
      return;
    }
    const cell = args.cell;
    this._queue = this._queue.filter(queued => queued !== cell);
    // The kernel commits the cell's record before it replies: ask for it now, and
    // until it comes keep the footer as it is (no flicker).
    this._awaiting.add(cell);
    void this._cells.refresh().finally(() => {
      this._awaiting.delete(cell);
      this.update();
    });
    this._started();
    this.update();
  }

  /** The head of the queue began now: note when, and tick its footer each second. */
  private _started(): void {
    const head = this.runningCell;
    if (head !== this._head) {
      this._head = head;
      if (head) {
        this._ranAt.set(head.model.id, Date.now() / 1000);
      }
    }
    clearInterval(this._timer);
    this._timer = head
      ? setInterval(() => this._updateRunning(), 1000)
      : undefined;
    this._updateRunning();
  }

  private _settings: IFooterSettings = DEFAULT_FOOTER_SETTINGS;
  private _live: ILiveFigures | null = null;
  private _queue: Cell[] = [];
  private _awaiting = new Set<Cell>();
  // When each cell last began running here (seconds since the epoch), by cell id.
  private _ranAt = new Map<string, number>();
  private _head: Cell | null = null;
  private _timer: ReturnType<typeof setInterval> | undefined = undefined;
  private _disposed = false;
}

function footerOf(cell: Cell): HTMLElement | null {
  return cell.node.querySelector(`:scope > .${FOOTER_CLASS}`);
}
