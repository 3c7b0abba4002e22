/**
 * The recorded cells of one notebook, from the server's ledger: polled with a Lumino
 * `Poll` (incrementally, after the last row seen), refreshed at once when a cell ends.
 */
import { ServerConnection } from '@jupyterlab/services';
import { IDisposable } from '@lumino/disposable';
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import { fetchNotebookCells } from './api';
import { ICellRecord } from './schema';

export const CELLS_REFRESH_MS = 2000;
const MAX_BACKOFF_MS = 60_000;
// Pages fetched in one poll at most (a long history loads over a few polls).
const MAX_PAGES_PER_POLL = 20;

export class NotebookCells implements IDisposable {
  /**
   * `path()` is the notebook's path now (it follows renames); while `shown()` is
   * false (the notebook is in a hidden tab) the poll stands by.
   */
  constructor(
    private readonly _path: () => string,
    private readonly _shown: () => boolean = () => true,
    private readonly _settings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {
    this._poll = new Poll({
      auto: true,
      factory: () => this._tick(),
      frequency: {
        interval: CELLS_REFRESH_MS,
        backoff: true,
        max: MAX_BACKOFF_MS
      },
      name: 'carbon_magic:cells',
      standby: () => (this._shown() ? 'when-hidden' : true)
    });
  }

  /** Emitted when cells were added (or all forgotten, after a rename). */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** The latest record of each cell id. */
  get byCellId(): ReadonlyMap<string, ICellRecord> {
    return this._latest;
  }

  /** Every record, oldest first (a cell run twice appears twice). */
  get records(): readonly ICellRecord[] {
    return this._records;
  }

  /** The last error, or null when the latest poll succeeded. */
  get error(): string | null {
    return this._error;
  }

  get isDisposed(): boolean {
    return this._poll.isDisposed;
  }

  /** Ask now (a cell just ended, a kernel restarted). */
  async refresh(): Promise<void> {
    if (!this._poll.isDisposed) {
      await this._poll.refresh();
    }
  }

  /** Forget everything and load again (the notebook was renamed). */
  reset(): void {
    this._after = 0;
    this._records = [];
    this._latest = new Map();
    this._changed.emit();
    void this.refresh();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._poll.dispose();
    Signal.clearData(this);
  }

  private async _tick(): Promise<void> {
    const path = this._path();
    let added = false;
    try {
      for (let page = 0; page < MAX_PAGES_PER_POLL; page++) {
        const answer = await fetchNotebookCells(
          path,
          this._after,
          this._settings
        );
        if (path !== this._path() || answer.after !== this._after) {
          return; // renamed or reset meanwhile: the next poll starts over
        }
        for (const cell of answer.cells) {
          this._records.push(cell);
          if (cell.cell_id) {
            this._latest.set(cell.cell_id, cell);
          }
        }
        added = added || answer.cells.length > 0;
        this._after = answer.last_id;
        if (!answer.more) {
          break;
        }
      }
      this._error = null;
    } catch (error) {
      this._error = error instanceof Error ? error.message : String(error);
      throw error; // the poll backs off
    } finally {
      if (added) {
        this._changed.emit();
      }
    }
  }

  private _poll: Poll;
  private _changed = new Signal<this, void>(this);
  private _after = 0;
  private _records: ICellRecord[] = [];
  private _latest = new Map<string, ICellRecord>();
  private _error: string | null = null;
}
