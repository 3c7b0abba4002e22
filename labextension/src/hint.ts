/**
 * The carbon-aware hint of a kernel's grid forecast, as the Carbon sidebar shows it
 * (pure: no DOM, unit-tested in test/hint.test.mjs).
 */

import type { IKernelHint } from './records.generated';

export type { IKernelHint } from './records.generated';

/** What the sidebar shows for a hint: the line, its spoken label and its tooltip. */
export interface IHintView {
  text: string;
  label: string;
  title: string;
}

/** Longer texts are cut here (characters), with an ellipsis; the tooltip has it all. */
export const MAX_HINT_CHARS = 160;

/**
 * The hint to show for a kernel's figures, or `null`: none sent, blank, or the kernel
 * is not live (a stopped or silent kernel's forecast is not the grid of now).
 */
export function hintView(figures: {
  live: boolean;
  hint?: IKernelHint | null;
}): IHintView | null {
  const raw = figures.hint?.text;
  if (!figures.live || typeof raw !== 'string') {
    return null;
  }
  const full = raw.replace(/\s+/g, ' ').trim();
  if (!full) {
    return null;
  }
  const text =
    full.length > MAX_HINT_CHARS
      ? `${full.slice(0, MAX_HINT_CHARS - 1).replace(/\s+$/, '')}…`
      : full;
  return {
    text,
    label: `Carbon-aware hint: ${full}`,
    title: `${full}\nFrom the forecast of the kernel’s grid intensity provider: cells run when the grid is cleaner emit less.`
  };
}
