/**
 * Shared by the browser tests: notebooks to upload, the ledger's records as the
 * server returns them (checked against the extension's TypeScript interface), the
 * live surfaces sampled together and where screenshots go.
 */
import { expect } from '@playwright/test';
import * as path from 'path';

/** Screenshots land here (never over tracked files); `make screenshots` copies them. */
export const SCREENSHOTS = path.resolve(
  __dirname,
  '..',
  '..',
  '..',
  'build',
  'screenshots'
);

// The extension's pure modules, compiled for node by `jlpm build:unit`.
const UNIT = path.resolve(__dirname, '..', '..', '..', 'build', 'ts-unit');
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const cellformat = require(path.join(UNIT, 'cellformat.js'));
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const schema = require(path.join(UNIT, 'schema.js'));

/** An nbformat 4 notebook of code cells with the given sources, on a Python kernel. */
export function notebookJson(sources: string[]): string {
  return JSON.stringify({
    cells: sources.map((source, index) => ({
      cell_type: 'code',
      execution_count: null,
      id: `cell-${index}-${Math.random().toString(36).slice(2, 10)}`,
      metadata: {},
      outputs: [],
      source
    })),
    metadata: {
      kernelspec: {
        display_name: 'Python 3 (ipykernel)',
        language: 'python',
        name: 'python3'
      }
    },
    nbformat: 4,
    nbformat_minor: 5
  });
}

/** A cell that keeps one CPU busy for `seconds`. */
export function busyCell(seconds: number): string {
  return [
    'import time',
    `deadline = time.monotonic() + ${seconds}`,
    'while time.monotonic() < deadline:',
    '    sum(i * i for i in range(10_000))'
  ].join('\n');
}

/** Seconds one step of `tqdmCell` keeps a CPU busy. */
const TQDM_STEP_S = 0.2;

/**
 * Steps of the tqdm cell the live tests run (12 s), and how long they sample it: long
 * enough for the time left to count down through more values than answers arrive.
 */
export const LIVE_CELL_STEPS = 60;
const LIVE_SAMPLE_MS = 9_000;

/** A recorded `%%carbon` cell (the live panel) with a tqdm loop of `steps` steps. */
export function tqdmCell(steps: number): string {
  return [
    '%%carbon --name fit',
    'import time',
    'from tqdm import tqdm',
    `for step in tqdm(range(${steps})):`,
    `    deadline = time.monotonic() + ${TQDM_STEP_S}`,
    '    while time.monotonic() < deadline:',
    '        sum(i * i for i in range(10_000))'
  ].join('\n');
}

/** Every cell the ledger recorded for `notebookPath`, checked against ICellsPage. */
export async function ledgerCells(
  page: any,
  notebookPath: string
): Promise<any[]> {
  const cells: any[] = [];
  let after = 0;
  for (;;) {
    const answer = await page.evaluate(
      async ([where, cursor]: [string, number]) => {
        const config = JSON.parse(
          document.getElementById('jupyter-config-data')!.textContent!
        );
        const url = `${config.baseUrl}carbon-magic/api/v1/cells?path=${encodeURIComponent(where)}&after=${cursor}`;
        const response = await fetch(url, { credentials: 'same-origin' });
        return response.json();
      },
      [notebookPath, after]
    );
    // Strict: the server sends no field the TypeScript interface does not declare.
    schema.checkCellsPage(answer, true);
    cells.push(...answer.cells);
    after = answer.last_id;
    if (!answer.more) {
      return cells;
    }
  }
}

/** The latest record of each cell id. */
export function latestByCellId(cells: any[]): Map<string, any> {
  const latest = new Map<string, any>();
  for (const cell of cells) {
    if (cell.cell_id) {
      latest.set(cell.cell_id, cell);
    }
  }
  return latest;
}

/**
 * The footers the extension's own rules call for, by cell index: the cells whose
 * record shows a footer under the default settings (threshold, magic-only cells), each
 * in the notebook's one unit.
 */
export function expectedFooterTexts(
  cells: { index: number; record: any; source: string }[]
): [number, string][] {
  const settings = cellformat.DEFAULT_FOOTER_SETTINGS;
  const shown = cells.filter(
    ({ record, source }) =>
      record && cellformat.showsFooter(record, settings, source)
  );
  const units = cellformat.cellUnits(shown.map(({ record }) => record));
  return shown.map(({ index, record }) => [
    index,
    cellformat.footerText(record, settings.footerLead, units)
  ]);
}

/** `text` with each no-break space as a plain one (for regular expressions). */
export function plain(text: string | null): string {
  return (text ?? '').replace(/\u00a0/g, ' ');
}

/** The contrast ratio (WCAG) of each listed element's text against its background. */
export async function contrasts(page: any, selectors: string[]) {
  return page.evaluate((wanted: string[]) => {
    const rgba = (value: string) => {
      const parts = value.match(/[\d.]+/g)!.map(Number);
      return { r: parts[0], g: parts[1], b: parts[2], a: parts[3] ?? 1 };
    };
    const over = (top: any, bottom: any) => ({
      r: top.r * top.a + bottom.r * (1 - top.a),
      g: top.g * top.a + bottom.g * (1 - top.a),
      b: top.b * top.a + bottom.b * (1 - top.a),
      a: 1
    });
    const background = (node: Element): any => {
      const layers: any[] = [];
      for (let at: Element | null = node; at; at = at.parentElement) {
        const colour = rgba(getComputedStyle(at).backgroundColor);
        if (colour.a > 0) {
          layers.push(colour);
          if (colour.a >= 1) {
            break;
          }
        }
      }
      return layers.reverse().reduce((below, layer) => over(layer, below), {
        r: 255,
        g: 255,
        b: 255,
        a: 1
      });
    };
    const luminance = ({ r, g, b }: any) => {
      const channel = (v: number) => {
        const s = v / 255;
        return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
      };
      return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
    };
    const result: Record<string, number> = {};
    for (const selector of wanted) {
      const node = document.querySelector(selector);
      if (!node) {
        result[selector] = -1;
        continue;
      }
      const style = getComputedStyle(node);
      const isSvgText = node instanceof SVGElement;
      const back = background(isSvgText ? node.closest('svg')! : node);
      const ink = over(rgba(isSvgText ? style.fill : style.color), back);
      const [hi, lo] = [luminance(ink), luminance(back)].sort((a, b) => b - a);
      result[selector] = (hi + 0.05) / (lo + 0.05);
    }
    return result;
  }, selectors);
}

/** Watts in a text (`2.5 W`, `500 mW`), or null. */
export function watts(text: string | null): number | null {
  const match = /([\d.,]+)\s(mW|W|kW)\b/.exec(plain(text));
  if (!match) {
    return null;
  }
  const scale: Record<string, number> = { mW: 1e-3, W: 1, kW: 1e3 };
  return Number(match[1].replace(/,/g, '')) * scale[match[2]];
}

/**
 * Where the live figures show. The status item and the footer are on every page; the
 * popup only where the item opens one (JupyterLab's status bar), so null elsewhere.
 */
export interface ILiveSurfaces {
  status: string;
  popupPower: string | null;
  popupPredicted: string | null;
  popupRunning: string | null;
}

/** JupyterLab's live surfaces: the status bar's item and its popup. */
export const LAB_SURFACES: ILiveSurfaces = {
  status: '#jp-main-statusbar .cm-StatusItem',
  popupPower: '.cm-Popup tr.cm-watts td',
  popupPredicted: '.cm-Popup tr.cm-prediction td',
  popupRunning: '.cm-Popup tr.cm-running'
};

/** One moment of every live surface, and of tqdm's own bar. */
export interface ILiveSample {
  at: number;
  status: string | null;
  popupPower: string | null;
  popupPredicted: string | null;
  footer: string | null;
  panel: string | null;
  tqdm: string | null;
}

/**
 * Samples every surface together, in one task of the page, four times a second
 * for `forMs` milliseconds.
 */
async function sampleLiveSurfaces(
  page: any,
  surfaces: ILiveSurfaces,
  forMs: number
): Promise<ILiveSample[]> {
  return page.evaluate(
    async ([where, duration]: [ILiveSurfaces, number]) => {
      const text = (selector: string | null) =>
        selector
          ? (document.querySelector(selector)?.textContent ?? null)
          : null;
      const taken: any[] = [];
      const until = performance.now() + duration;
      while (performance.now() < until) {
        const tqdmText = Array.from(
          document.querySelectorAll('.jp-OutputArea-output[data-mime-type]')
        )
          .map(node => node.textContent ?? '')
          .filter(t => /\d+%\|/.test(t))
          .pop();
        taken.push({
          at: performance.now(),
          status: text(where.status),
          popupPower: text(where.popupPower),
          popupPredicted: text(where.popupPredicted),
          footer: text('.cm-CellFooter.cm-mod-running .cm-CellFooter-text'),
          panel: text('.carbon-magic-panel .cm-watts b'),
          tqdm: tqdmText ?? null
        });
        await new Promise(resolve => setTimeout(resolve, 250));
      }
      return taken;
    },
    [surfaces, forMs]
  );
}

/**
 * Checks that the samples taken while a tqdm cell of `cellS` seconds ran show one set
 * of figures: the status item, the popup (where there is one) and the running cell's
 * footer the same power, progress and time left at the same moment, tqdm's own count
 * at most a beat and a poll apart, the live panel the same power at most a beat and a
 * poll before, and a time left that counts down between answers. Returns the highest
 * power the status item showed (watts).
 */
function expectLiveAgreement(
  samples: ILiveSample[],
  withPopup: boolean,
  cellS: number
): number {
  // Samples once the kernel's figures say the cell runs (the footer shows its power).
  const running = samples.filter(
    s => s.footer?.includes(' now') && s.status && (!withPopup || s.popupPower)
  );
  expect(running.length).toBeGreaterThan(10);
  // The live panel drew its power (else the comparison with it below checks nothing).
  expect(samples.some(s => watts(s.panel) !== null)).toBe(true);
  // A beat and a poll (2 s) of the cell's run, in points of progress.
  const tqdmSlack = Math.ceil((2 / cellS) * 100);
  let predicted = 0;
  for (const s of running) {
    const power = watts(s.status);
    expect(power).not.toBeNull();
    expect(watts(s.footer)).toBe(power);
    if (withPopup) {
      expect(watts(s.popupPower)).toBe(power);
    }
    const percent = /· (\d+)%$/.exec(s.status!)?.[1];
    if (percent) {
      predicted += 1;
      expect(s.footer).toContain(`≈ ${percent}%`);
      if (withPopup) {
        expect(s.popupPredicted).toContain(`≈ ${percent}%`);
        const left = /([^·]+) left$/.exec(plain(s.footer))?.[1].trim();
        expect(plain(s.popupPredicted)).toContain(`${left} left`);
      }
      const tqdm = [...(s.tqdm ?? '').matchAll(/(\d+)%\|/g)].pop()?.[1];
      if (tqdm) {
        expect(Math.abs(Number(tqdm) - Number(percent))).toBeLessThanOrEqual(
          tqdmSlack
        );
      }
    }
    const seen = samples
      .filter(o => o.at <= s.at && o.at >= s.at - 3_000 && o.panel)
      .map(o => watts(o.panel));
    if (seen.length) {
      expect(seen).toContain(power);
    }
  }
  expect(predicted).toBeGreaterThan(3);
  // The time left counts down between answers: it changes more often than once a beat.
  const lefts = running
    .map(s => /([^·]+) left$/.exec(plain(s.footer))?.[1].trim())
    .filter(Boolean);
  expect(new Set(lefts).size).toBeGreaterThan(4);
  return Math.max(...running.map(s => watts(s.status) ?? 0));
}

/**
 * Milliseconds from the cell's end as the page learnt it (`window.__cmDoneAt`, set
 * when its run command settled) until the status item shows the idle kernel (under
 * half of `busyWatts`) and the popup, where there is one, no running cell; Infinity
 * after 10 s.
 */
async function idleAfterMs(
  page: any,
  surfaces: ILiveSurfaces,
  busyWatts: number
): Promise<number> {
  return page.evaluate(
    async ([where, busy]: [ILiveSurfaces, number]) => {
      const idleAt: number = (window as any).__cmDoneAt;
      const parse = (text: string) => {
        const m = /([\d.,]+)\s(mW|W|kW)\b/.exec(text.replace(/\u00a0/g, ' '));
        const scale: Record<string, number> = { mW: 1e-3, W: 1, kW: 1e3 };
        return m ? Number(m[1].replace(/,/g, '')) * scale[m[2]] : NaN;
      };
      while (performance.now() - idleAt < 10_000) {
        const status = document.querySelector(where.status)?.textContent ?? '';
        const runningRow = where.popupRunning
          ? document.querySelector(where.popupRunning)
          : null;
        if (parse(status) < busy / 2 && !runningRow) {
          return performance.now() - idleAt;
        }
        await new Promise(resolve => setTimeout(resolve, 50));
      }
      return Infinity;
    },
    [surfaces, busyWatts]
  );
}

/**
 * Runs the active notebook's cell at `index` with JupyterLab's command (as Notebook 7
 * and JupyterLab both have it); `window.__cmDoneAt` takes the moment its run settled.
 * Resolves once it has.
 */
export async function runCellMarkingEnd(
  page: any,
  index: number
): Promise<void> {
  await page.evaluate((at: number) => {
    const app = (window as any).jupyterapp;
    app.shell.currentWidget.content.activeCellIndex = at;
    return app.commands
      .execute('notebook:run-cell')
      .then(() => ((window as any).__cmDoneAt = performance.now()));
  }, index);
}

/**
 * Runs the tqdm cell (`tqdmCell(LIVE_CELL_STEPS)`) at `index` of the active notebook and
 * checks that its live surfaces show one set of figures while it runs (sampled for
 * `LIVE_SAMPLE_MS`; `whileRunning` is called once they are, the cell still running),
 * and the idle kernel within 2 s of its end.
 */
export async function expectOneSetOfLiveFigures(
  page: any,
  surfaces: ILiveSurfaces,
  index: number,
  whileRunning: () => Promise<void> = async () => undefined
): Promise<void> {
  const ran = runCellMarkingEnd(page, index);
  const samples = await sampleLiveSurfaces(page, surfaces, LIVE_SAMPLE_MS);
  await whileRunning();
  const busy = expectLiveAgreement(
    samples,
    surfaces.popupPower !== null,
    LIVE_CELL_STEPS * TQDM_STEP_S
  );
  await ran;
  // The cell ended: within 2 s of its reply the status item shows the idle kernel
  // (well under the busy power), and the popup, where there is one, no running cell.
  expect(await idleAfterMs(page, surfaces, busy)).toBeLessThan(2_000);
}
