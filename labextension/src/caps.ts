/**
 * The notebook and day caps as the status item, its popup and the sidebar show them:
 * what is left today (`12 g left today`), how near each cap is (`ok`, `warn` from
 * 80 % spent, `spent` at 100 %), and a bar per cap with its accessible name.
 * The words are pure (no DOM) so they are unit-tested; `capBar` builds the bar.
 */
import { formatGrams, formatKwh } from './format';
import { IScopeBudget } from './schema';

/** How near a cap is: well within it, near it (`WARN_FRACTION` spent), or spent. */
export type CapLevel = 'ok' | 'warn' | 'spent';

/** From this share of a cap spent, the cap shows in the warning colour. */
export const WARN_FRACTION = 0.8;

const SCOPE_NAMES: Record<IScopeBudget['scope'], string> = {
  day: 'Day budget',
  notebook: 'Notebook budget'
};

/** The level of a cap of which `fraction` is spent (1.0: all of it; not finite: spent). */
export function capLevel(fraction: number): CapLevel {
  if (!(fraction < 1)) {
    return 'spent'; // NaN and Infinity too: nothing can be said to be left
  }
  return fraction >= WARN_FRACTION ? 'warn' : 'ok';
}

/** A figure of a cap on its own scale, so that the 5 g left of a 1 kg cap read `5 g`,
 * not `< 0.01 kg`: `5 g`, `150 Wh`. */
function scaled(value: number, cap: IScopeBudget): string {
  return cap.unit === 'g' ? formatGrams(value) : formatKwh(value);
}

/** A cap's figure with its quantity: `12 g CO₂e` or `150 Wh`. */
function amount(value: number, cap: IScopeBudget): string {
  const text = scaled(value, cap);
  return cap.unit === 'g' ? `${text} CO₂e` : text;
}

/** A share as a whole percentage, over 100 % when a cap is overspent: `104%`. */
function percent(fraction: number): string {
  return Number.isFinite(fraction) ? `${Math.round(fraction * 100)}%` : '—';
}

/** The day cap among a kernel's caps, or null when none is set. */
export function dayCap(caps: readonly IScopeBudget[]): IScopeBudget | null {
  return caps.find(cap => cap.scope === 'day') ?? null;
}

/** What the status item adds for the day cap: its short text, the sentence for its
 * tooltip and screen readers, and its level. */
export interface IDayLeft {
  text: string;
  label: string;
  level: CapLevel;
}

/** `12 g left today` (or `no budget left today` once spent), with its sentence. */
export function dayLeft(cap: IScopeBudget): IDayLeft {
  const level = capLevel(cap.fraction);
  const text =
    level === 'spent'
      ? 'no budget left today'
      : `${scaled(cap.remaining, cap)} left today`;
  return { text, label: `${capSentence(cap)}.`, level };
}

/** `Day budget: 38 g CO₂e spent of 50 g CO₂e (76%), 12 g CO₂e left, near the cap`. */
export function capSentence(cap: IScopeBudget): string {
  const level = capLevel(cap.fraction);
  const state =
    level === 'spent'
      ? `spent${cap.on_exceed === 'stop' ? ': cells that spend more are stopped' : ''}`
      : `${amount(cap.remaining, cap)} left${level === 'warn' ? ', near the cap' : ''}`;
  return (
    `${SCOPE_NAMES[cap.scope]}: ${amount(cap.spent, cap)} spent ` +
    `of ${amount(cap.limit, cap)} (${percent(cap.fraction)}), ${state}`
  );
}

/** The words beside a cap's bar: `38 g of 50 g CO₂e · 12 g left` (or `· 2 g over`). */
export function capFigures(cap: IScopeBudget): string {
  const quantity = cap.unit === 'g' ? ' CO₂e' : '';
  const over = cap.spent - cap.limit;
  const rest =
    over > 0
      ? `${scaled(over, cap)} over`
      : `${scaled(cap.remaining, cap)} left`;
  return `${scaled(cap.spent, cap)} of ${scaled(cap.limit, cap)}${quantity} · ${rest}`;
}

/** The name a cap's row or bar shows: `Day budget` or `Notebook budget`. */
export function capName(cap: IScopeBudget): string {
  return SCOPE_NAMES[cap.scope];
}

/**
 * A cap as a bar with its figures: a `meter` (its value the amount spent, at most the
 * limit; its text the full sentence), filled in the warning colour near the cap and
 * the error colour once spent; the words beside it say the same, so colour is never
 * the only cue. `named`: the cap's name shown before it (where no row header does).
 */
export function capBar(cap: IScopeBudget, named = false): HTMLElement {
  const level = capLevel(cap.fraction);
  const node = document.createElement('div');
  node.className = `cm-Cap cm-mod-${level}`;
  node.dataset.scope = cap.scope;
  const meter = document.createElement('span');
  meter.className = 'cm-Cap-bar';
  meter.setAttribute('role', 'meter');
  meter.setAttribute('aria-label', capName(cap));
  meter.setAttribute('aria-valuemin', '0');
  meter.setAttribute('aria-valuemax', String(cap.limit));
  meter.setAttribute('aria-valuenow', String(Math.min(cap.spent, cap.limit)));
  meter.setAttribute('aria-valuetext', capSentence(cap));
  const fill = document.createElement('span');
  fill.className = 'cm-Cap-fill';
  const share = Number.isFinite(cap.fraction) ? cap.fraction : 1;
  fill.style.width = `${Math.round(Math.min(1, Math.max(0, share)) * 1000) / 10}%`;
  meter.appendChild(fill);
  const words = document.createElement('span');
  words.className = 'cm-Cap-figures';
  words.textContent = capFigures(cap);
  if (named) {
    const name = document.createElement('span');
    name.className = 'cm-Cap-name';
    name.textContent = capName(cap);
    node.appendChild(name);
  }
  node.append(meter, words);
  node.title = capSentence(cap);
  return node;
}
