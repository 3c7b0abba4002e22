/**
 * Footers under a notebook's recorded code cells (`⚡ 4.2 mg CO₂e · 11 mWh · 12.1 s`),
 * matched by cell id to the ledger's records, and the running cell's prediction.
 *
 * A footer is a plain text node appended to the cell's node (like execute-time
 * lines are): cell sources and statuses are always set as text, never as HTML.
 */
import { Cell } from '@jupyterlab/cells';
import { Notebook, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { IDisposable } from '@lumino/disposable';
import { Signal } from '@lumino/signaling';

import {
  DEFAULT_FOOTER_SETTINGS,
  footerText,
  footerTitle,
  IFooterSettings,
  PREDICTION_TITLE,
  predictionText,
  showsFooter
} from './cellformat';
import { NotebookCells } from './cells';
import { IPrediction } from './schema';

export const FOOTER_CLASS = 'cm-CellFooter';

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

  /** The running cell's prediction (from the kernel's figures), or null. */
  set prediction(value: IPrediction | null) {
    if (JSON.stringify(value) === JSON.stringify(this._prediction)) {
      return;
    }
    this._prediction = value;
    this.update();
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
    for (const cell of this._panel.content.widgets) {
      if (cell.model.type !== 'code') {
        continue;
      }
      if (cell === running && this._prediction && this._settings.footers) {
        this._show(cell, predictionText(this._prediction), PREDICTION_TITLE);
        footerOf(cell)?.classList.add('cm-mod-running');
        continue;
      }
      const record = this._cells.byCellId.get(cell.model.id);
      if (record && showsFooter(record, this._settings)) {
        this._show(
          cell,
          footerText(record, this._settings.footerLead),
          footerTitle(record)
        );
        footerOf(cell)?.classList.remove('cm-mod-running');
        footerOf(cell)?.setAttribute('data-record-id', String(record.id));
      } else {
        footerOf(cell)?.remove();
      }
    }
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    NotebookActions.executionScheduled.disconnect(this._onScheduled, this);
    NotebookActions.executed.disconnect(this._onExecuted, this);
    Signal.disconnectReceiver(this);
    for (const cell of this._panel.content.widgets) {
      footerOf(cell)?.remove();
    }
  }

  private _show(cell: Cell, text: string, title: string): void {
    let node = footerOf(cell);
    if (!node) {
      node = document.createElement('div');
      node.className = FOOTER_CLASS;
      node.tabIndex = 0;
      node.setAttribute('role', 'note');
      cell.node.appendChild(node);
    }
    if (node.textContent !== text) {
      node.textContent = text;
    }
    node.title = title;
    node.setAttribute('aria-label', `Carbon of this cell: ${text}`);
    node.setAttribute('aria-description', title);
  }

  private _onCellsChanged(): void {
    // Cells added (pasted, undone) may already have records; removed ones take
    // their footers with them.
    requestAnimationFrame(() => this.update());
  }

  private _onScheduled(_: unknown, args: { notebook: Notebook; cell: Cell }) {
    if (args.notebook === this._panel.content) {
      this._queue.push(args.cell);
    }
  }

  private _onExecuted(_: unknown, args: { notebook: Notebook; cell: Cell }) {
    if (args.notebook !== this._panel.content) {
      return;
    }
    this._queue = this._queue.filter(cell => cell !== args.cell);
    // The kernel commits the cell's record before it replies: ask for it now.
    void this._cells.refresh();
    this.update();
  }

  private _settings: IFooterSettings = DEFAULT_FOOTER_SETTINGS;
  private _prediction: IPrediction | null = null;
  private _queue: Cell[] = [];
  private _disposed = false;
}

function footerOf(cell: Cell): HTMLElement | null {
  return cell.node.querySelector(`:scope > .${FOOTER_CLASS}`);
}
