/**
 * Shared by the browser tests: notebooks to upload, the ledger's records as the
 * server returns them (checked against the extension's TypeScript interface) and
 * where screenshots go.
 */
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
