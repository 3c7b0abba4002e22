/**
 * The power timeline of the sidebar, as SVG drawn at the sidebar's width in pixels
 * (uniform scale: text keeps its size whatever the width): one bar per recorded cell
 * over its span (height: its mean power, from the ledger), the kernel's live power as
 * a line that breaks where no reading came (idle gaps are gaps, not diagonals), and
 * axes with the peak power and the time span. Colours are theme variables.
 */
import { formatDuration, formatWatts } from './format';
import { ICellRecord } from './schema';

const SVG = 'http://www.w3.org/2000/svg';
const HEIGHT = 96;
const LEFT = 44; // room for the power axis labels
const RIGHT = 4;
const TOP = 8;
const BOTTOM = 16; // room for the time axis labels

/** A live power reading: seconds since the epoch, watts. */
export interface IPowerSample {
  at: number;
  watts: number;
}

/** How to draw: the width in pixels, and the kernel's sampling interval (s). */
export interface ITimelineOptions {
  width: number;
  intervalS: number;
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

/** Runs of samples with no gap longer than `gapS` inside a run. */
export function sampleRuns(
  samples: readonly IPowerSample[],
  gapS: number
): IPowerSample[][] {
  const runs: IPowerSample[][] = [];
  for (const sample of samples) {
    const run = runs[runs.length - 1];
    if (run && sample.at - run[run.length - 1].at <= gapS) {
      run.push(sample);
    } else {
      runs.push([sample]);
    }
  }
  return runs;
}

/** The SVG timeline of `cells` and `samples` (either may be empty). */
export function timelineSvg(
  cells: readonly ICellRecord[],
  samples: readonly IPowerSample[],
  label: (cell: ICellRecord) => string,
  options: ITimelineOptions = { width: 280, intervalS: 1 }
): SVGSVGElement {
  const width = Math.max(120, options.width);
  const svg = element('svg', {
    class: 'cm-Timeline',
    viewBox: `0 0 ${width} ${HEIGHT}`,
    width,
    height: HEIGHT,
    role: 'img'
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
        { x: 6, y: HEIGHT / 2, class: 'cm-Timeline-empty' },
        'No cells yet'
      )
    );
    return svg;
  }
  const t0 = Math.min(...starts);
  const t1 = Math.max(...ends, t0 + 1);
  const peak = Math.max(
    1e-3,
    ...cells.map(cell => cell.power_w.total),
    ...samples.map(s => s.watts)
  );
  const plotW = width - LEFT - RIGHT;
  const plotH = HEIGHT - TOP - BOTTOM;
  const x = (t: number) => LEFT + ((t - t0) / (t1 - t0)) * plotW;
  const y = (watts: number) => TOP + plotH - (watts / peak) * plotH;

  svg.setAttribute(
    'aria-label',
    `Power timeline over ${formatDuration(t1 - t0)}: ${cells.length} cells, peak ${formatWatts(peak)}`
  );
  // Axes: power (0 and the peak) on the left, time (span) along the bottom.
  const baseline = TOP + plotH + 0.5;
  svg.append(
    element('line', {
      x1: LEFT,
      x2: LEFT + plotW,
      y1: baseline,
      y2: baseline,
      class: 'cm-Timeline-axis'
    }),
    element('line', {
      x1: LEFT - 0.5,
      x2: LEFT - 0.5,
      y1: TOP,
      y2: baseline,
      class: 'cm-Timeline-axis'
    }),
    element('line', {
      x1: LEFT,
      x2: LEFT + plotW,
      y1: TOP + 0.5,
      y2: TOP + 0.5,
      class: 'cm-Timeline-grid'
    }),
    element(
      'text',
      {
        x: LEFT - 4,
        y: TOP + 4,
        class: 'cm-Timeline-label',
        'text-anchor': 'end'
      },
      formatWatts(peak)
    ),
    element(
      'text',
      {
        x: LEFT - 4,
        y: baseline,
        class: 'cm-Timeline-label',
        'text-anchor': 'end'
      },
      '0'
    ),
    element(
      'text',
      { x: LEFT, y: HEIGHT - 3, class: 'cm-Timeline-label' },
      `−${formatDuration(t1 - t0)}`
    ),
    element(
      'text',
      {
        x: LEFT + plotW,
        y: HEIGHT - 3,
        class: 'cm-Timeline-label',
        'text-anchor': 'end'
      },
      'latest'
    )
  );
  for (const cell of cells) {
    const left = x(cell.started_at);
    const bar = element('rect', {
      x: left,
      y: y(cell.power_w.total),
      width: Math.max(1, x(cell.ended_at) - left),
      height: Math.max(0.5, baseline - 0.5 - y(cell.power_w.total)),
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
  // A reading is due every interval while a cell runs and every beat when idle: a
  // longer silence is a gap in the line.
  const gapS = Math.max(2.5 * options.intervalS, 3);
  for (const run of sampleRuns(samples, gapS)) {
    const points = run
      .map(s => `${x(s.at).toFixed(1)},${y(s.watts).toFixed(1)}`)
      .join(' ');
    const line =
      run.length > 1
        ? element('polyline', { points, class: 'cm-Timeline-live' })
        : element('circle', {
            cx: x(run[0].at).toFixed(1),
            cy: y(run[0].watts).toFixed(1),
            r: 1.5,
            class: 'cm-Timeline-live cm-mod-point'
          });
    line.appendChild(element('title', {}, 'Live power of the kernel'));
    svg.appendChild(line);
  }
  return svg;
}
