/**
 * The status model: which kernel is in front of the user, and its latest figures.
 *
 * Polls the server with a Lumino `Poll`: every `refreshRate` ms, backing off on
 * errors, standing by while the browser tab is hidden or no notebook is shown.
 */
import { ServerConnection } from '@jupyterlab/services';
import { IPoll, Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';
import { IDisposable } from '@lumino/disposable';

import { fetchKernel, fetchSummary, IKernelFigures, ISummary } from './api';
import { ILiveFigures, liveFigures } from './live';
import { SchemaError } from './schema';

/** What the status item shows. */
export type Status =
  | { kind: 'idle' } // no notebook, its kernel is not started yet, or a malformed answer
  | { kind: 'untracked' } // the kernel never loaded carbon_magic (404)
  | { kind: 'figures'; figures: IKernelFigures }
  | { kind: 'error'; message: string };

export const DEFAULT_REFRESH_MS = 2000;
const MAX_BACKOFF_MS = 60_000;
// A kernel without a tracker is asked again this often on schedule (each answer is a
// 404 in the server's log); a refresh (tab switch, kernel status change, e.g. the end
// of the `%load_ext carbon_magic` cell) asks at once.
const UNTRACKED_RECHECK_MS = 15_000;
// The kernel's tracker beats within one sampling interval of a cell's start or end; the
// follow-up fetch waits that long and this much more (the ledger write, the server read).
const FOLLOW_UP_MARGIN_MS = 250;
const MAX_FOLLOW_UP_MS = 5_000;
// A follow-up answer that does not show the change yet (a loaded machine beat late) is
// asked again this often, for at most this long, rather than left to the next poll.
const FOLLOW_UP_RETRY_MS = 250;
const FOLLOW_UP_RETRY_FOR_MS = 2_000;
// While a cell runs the live figures are carried forward (time left, elapsed) this often.
const CLOCK_MS = 1000;

export class CarbonModel implements IDisposable {
  constructor(
    private readonly _settings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {
    this._poll = this._createPoll(DEFAULT_REFRESH_MS);
  }

  /** Emitted whenever `status`, `visible` or `summary` change. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Whether a notebook is the current widget (the item is hidden otherwise). */
  get visible(): boolean {
    return this._visible;
  }

  get kernelId(): string | null {
    return this._kernelId;
  }

  get status(): Status {
    return this._status;
  }

  /**
   * The figures as of now, the one source every live surface reads: the latest
   * answer, with the running cell's time left and progress carried forward since.
   * Taken once per `changed` or `clock` signal, so every surface shows one snapshot.
   */
  get live(): ILiveFigures | null {
    return this._live;
  }

  /** Emitted every second while a cell runs, between answers (a countdown). */
  get clock(): ISignal<this, void> {
    return this._clock;
  }

  /** The server summary, fetched while `wantSummary` is set (the popup is open). */
  get summary(): ISummary | null {
    return this._summary;
  }

  get isDisposed(): boolean {
    return this._poll.isDisposed;
  }

  /** Ask for the server summary on every poll (for the popup) or stop asking. */
  set wantSummary(value: boolean) {
    this._wantSummary = value;
    if (value) {
      void this.refresh();
    }
  }

  /** Poll every `ms` milliseconds (errors back off from this). */
  set refreshRate(ms: number) {
    this._refreshMs = Math.max(500, ms || DEFAULT_REFRESH_MS);
    this._followCell();
  }

  /** Follow a notebook (its kernel id may be null while it starts) or nothing. */
  setTarget(visible: boolean, kernelId: string | null): void {
    const kernelChanged = kernelId !== this._kernelId;
    if (!kernelChanged && visible === this._visible) {
      return;
    }
    this._visible = visible;
    this._kernelId = kernelId;
    if (kernelChanged) {
      this._status = { kind: 'idle' };
      this._followCell();
    }
    this._emit(this._changed);
    void this.refresh();
  }

  /**
   * The kernel became `state` (began or finished running something): fetch again once
   * its tracker has beaten about it (one sampling interval later), rather than at the
   * next poll, so the item shows a cell's start or end within about a second. An answer
   * that does not show the change yet is asked again shortly after, for a while. Calls
   * in quick succession (Run All) push the one follow-up back rather than add fetches.
   */
  kernelActivityChanged(state: 'busy' | 'idle'): void {
    if (this.isDisposed) {
      return;
    }
    const intervalS =
      this._status.kind === 'figures'
        ? this._status.figures.session.interval_s
        : 1;
    const delayMs = Math.min(
      Math.max(intervalS, 0) * 1000 + FOLLOW_UP_MARGIN_MS,
      MAX_FOLLOW_UP_MS
    );
    const now = this._clockNow();
    this._awaited = {
      state,
      since: now,
      until: now + delayMs + FOLLOW_UP_RETRY_FOR_MS
    };
    this._scheduleFollowUp(delayMs);
  }

  /** Fetch now (after a tab switch, a kernel change or a restart). */
  async refresh(): Promise<void> {
    if (!this._poll.isDisposed) {
      await this._poll.refresh();
    }
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    clearTimeout(this._followUp);
    clearInterval(this._ticker);
    this._poll.dispose();
    Signal.clearData(this);
  }

  private _scheduleFollowUp(delayMs: number): void {
    clearTimeout(this._followUp);
    this._followUpAt = this._clockNow() + delayMs;
    this._followUp = setTimeout(() => void this.refresh(), delayMs);
  }

  /**
   * After an answer: whether it shows the kernel's awaited change (idle: no running
   * cell; busy: a running cell, or a heartbeat beaten since the change); if not, and the
   * follow-up is still within its time, ask again shortly.
   */
  private _checkAwaited(): void {
    const awaited = this._awaited;
    if (awaited === null) {
      return;
    }
    const now = this._clockNow();
    const live = this._live;
    const shown =
      live !== null &&
      (awaited.state === 'idle'
        ? !live.running
        : live.running || live.ageS <= (now - awaited.since) / 1000);
    if (shown || now >= awaited.until) {
      this._awaited = null;
    } else if (this._followUpAt <= now) {
      // (an answer from the regular poll leaves a follow-up still to come alone)
      this._scheduleFollowUp(FOLLOW_UP_RETRY_MS);
    }
  }

  /** Take the live snapshot now, then tell the surfaces. */
  private _emit(signal: Signal<this, void>): void {
    this._live =
      this._status.kind === 'figures'
        ? liveFigures(
            this._status.figures,
            (this._clockNow() - this._answeredAt) / 1000
          )
        : null;
    signal.emit();
  }

  /**
   * While a cell runs: ask at the kernel's sampling interval (not slower than the
   * refresh rate), so every surface is about one interval behind the kernel at most,
   * and tick the clock; otherwise the refresh rate, and no clock.
   */
  private _followCell(): void {
    const live =
      this._status.kind === 'figures'
        ? liveFigures(this._status.figures, 0)
        : null;
    const running = live?.running ?? false;
    const interval = Math.max(
      500,
      running
        ? Math.min(this._refreshMs, live!.figures.session.interval_s * 1000)
        : this._refreshMs
    );
    if (interval !== this._poll.frequency.interval) {
      this._poll.frequency = {
        interval,
        backoff: true,
        max: Math.max(MAX_BACKOFF_MS, interval)
      };
    }
    if (running && this._ticker === undefined) {
      this._ticker = setInterval(() => this._emit(this._clock), CLOCK_MS);
    } else if (!running && this._ticker !== undefined) {
      clearInterval(this._ticker);
      this._ticker = undefined;
    }
  }

  private _createPoll(interval: number): Poll {
    return new Poll({
      auto: true,
      factory: state => this._tick(state),
      frequency: { interval, backoff: true, max: MAX_BACKOFF_MS },
      name: 'carbon_magic:status',
      standby: () => (this._visible && this._kernelId ? 'when-hidden' : true)
    });
  }

  /** One poll: rejects on errors so that the poll backs off. */
  private async _tick(
    state: IPoll.State<void, unknown, string>
  ): Promise<void> {
    const kernelId = this._kernelId;
    if (!this._visible || !kernelId) {
      return;
    }
    const untrackedRecently =
      this._status.kind === 'untracked' &&
      this._clockNow() - this._answeredAt < UNTRACKED_RECHECK_MS;
    if (
      untrackedRecently &&
      state.phase !== 'refreshed' &&
      !this._wantSummary
    ) {
      return;
    }
    try {
      const [figures, summary] = await Promise.all([
        fetchKernel(kernelId, this._settings),
        this._wantSummary
          ? fetchSummary(this._settings)
          : Promise.resolve(this._summary)
      ]);
      if (kernelId !== this._kernelId) {
        return; // the user moved on meanwhile
      }
      this._status = figures
        ? { kind: 'figures', figures }
        : { kind: 'untracked' };
      this._summary = summary;
      this._answeredAt = this._clockNow();
      this._followCell();
      this._emit(this._changed);
      this._checkAwaited();
    } catch (error) {
      if (error instanceof SchemaError) {
        // A server whose JSON this frontend does not understand: say so once, show nothing.
        if (!this._warnedSchema) {
          this._warnedSchema = true;
          console.warn(
            'carbon_magic: ignoring a malformed kernel answer',
            error
          );
        }
        if (kernelId === this._kernelId && this._status.kind !== 'idle') {
          this._status = { kind: 'idle' };
          this._emit(this._changed);
        }
      } else if (kernelId === this._kernelId) {
        const message =
          error instanceof Error ? error.message : String(error ?? 'error');
        this._status = { kind: 'error', message };
        this._emit(this._changed);
      }
      this._followCell();
      throw error;
    }
  }

  private _poll: Poll;
  private _changed = new Signal<this, void>(this);
  private _visible = false;
  private _kernelId: string | null = null;
  private _status: Status = { kind: 'idle' };
  private _summary: ISummary | null = null;
  private _wantSummary = false;
  private _answeredAt = 0;
  private _warnedSchema = false;
  private _followUp: ReturnType<typeof setTimeout> | undefined = undefined;
  private _followUpAt = 0; // when the pending follow-up fires (monotonic ms)
  // The kernel state a follow-up waits to see, since and until when (monotonic ms).
  private _awaited: {
    state: 'busy' | 'idle';
    since: number;
    until: number;
  } | null = null;
  private _ticker: ReturnType<typeof setInterval> | undefined = undefined;
  private _clock = new Signal<this, void>(this);
  private _live: ILiveFigures | null = null;
  private _refreshMs = DEFAULT_REFRESH_MS;
  // Monotonic milliseconds: ages carried forward do not jump with the wall clock.
  private _clockNow = (): number => performance.now();
}
