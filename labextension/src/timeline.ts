/**
 * The power timeline of the sidebar, as SVG: one bar per recorded cell over its span
 * (height: its mean power, from the ledger) and the kernel's live power as a line
 * (the heartbeats seen while the sidebar was open). Colours are theme variables.
 */
import { formatDuration, formatWatts } from './format';
import { ICellRecord } from './schema';

const SVG = 'http://www.w3.org/2000/svg';
const WIDTH = 280;
const HEIGHT = 90;
const PAD_TOP = 14;

/** A live power reading: seconds since the epoch, watts. */
export interface IPowerSample {
  at: number;
  watts: number;
}

function element<K extends keyof SVGElementTagNameMap>(
  name: K,
  attributes: Record<string, string | number>,
  text?: string
): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) {
    node.setAttribute(key, String(value));
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/** The SVG timeline of `cells` and `samples` (either may be empty). */
export function timelineSvg(
  cells: readonly ICellRecord[],
  samples: readonly IPowerSample[],
  label: (cell: ICellRecord) => string
): SVGSVGElement {
  const svg = element('svg', {
    class: 'cm-Timeline',
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    width: '100%',
    role: 'img',
    preserveAspectRatio: 'none'
  });
  const starts = [
    ...cells.map(cell => cell.started_at),
    ...samples.map(s => s.at)
  ];
  const ends = [...cells.map(cell => cell.ended_at), ...samples.map(s => s.at)];
  if (!starts.length) {
    svg.setAttribute('aria-label', 'Power timeline: nothing recorded yet');
    svg.appendChild(
      element(
        'text',
        { x: 4, y: HEIGHT / 2, class: 'cm-Timeline-empty' },
        'no cells yet'
      )
    );
    return svg;
  }
  const t0 = Math.min(...starts);
  const t1 = Math.max(...ends, t0 + 1);
  const peak = Math.max(
    1,
    ...cells.map(cell => cell.power_w.total),
    ...samples.map(s => s.watts)
  );
  const x = (t: number) => ((t - t0) / (t1 - t0)) * WIDTH;
  const y = (watts: number) =>
    HEIGHT - (watts / peak) * (HEIGHT - PAD_TOP - 2) - 1;

  svg.setAttribute(
    'aria-label',
    `Power timeline over ${formatDuration(t1 - t0)}: ${cells.length} cells, peak ${formatWatts(peak)}`
  );
  svg.appendChild(
    element('line', {
      x1: 0,
      x2: WIDTH,
      y1: HEIGHT - 0.5,
      y2: HEIGHT - 0.5,
      class: 'cm-Timeline-axis'
    })
  );
  for (const cell of cells) {
    const left = x(cell.started_at);
    const bar = element('rect', {
      x: left,
      y: y(cell.power_w.total),
      width: Math.max(1, x(cell.ended_at) - left),
      height: Math.max(0.5, HEIGHT - 1 - y(cell.power_w.total)),
      class: 'cm-Timeline-cell'
    });
    bar.appendChild(
      element(
        'title',
        {},
        `${label(cell)}: mean ${formatWatts(cell.power_w.total)} over ${formatDuration(cell.duration_s)}`
      )
    );
    svg.appendChild(bar);
  }
  if (samples.length > 1) {
    const points = samples
      .map(s => `${x(s.at).toFixed(1)},${y(s.watts).toFixed(1)}`)
      .join(' ');
    const line = element('polyline', { points, class: 'cm-Timeline-live' });
    line.appendChild(element('title', {}, 'Live power of the kernel'));
    svg.appendChild(line);
  }
  svg.appendChild(
    element(
      'text',
      { x: 2, y: 10, class: 'cm-Timeline-label' },
      `${formatWatts(peak)} peak · ${formatDuration(t1 - t0)}`
    )
  );
  return svg;
}
