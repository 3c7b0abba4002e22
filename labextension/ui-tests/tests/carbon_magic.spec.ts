/**
 * End to end: a notebook loads carbon_magic, runs a measured cell, and both the
 * live panel and the status bar show figures that move while the cell runs.
 */
import { expect, test } from '@jupyterlab/galata';
import * as path from 'path';

import { SCREENSHOTS as IMAGES, notebookJson } from './helpers';

const STATUS_ITEM = '#jp-main-statusbar .cm-StatusItem';
const WATTS_AND_GRAMS =
  /^⚡ [\d.,]+\s(mW|W|kW) · (<\s)?[\d.,]+\s(mg|g|kg|t) CO₂e$/;
const GRAMS_RANGE =
  /≈ [\d.,]+\s(mg|g|kg|t) \([\d.,]+\s?(mg|g|kg|t)?–[\d.,]+\s(mg|g|kg|t)\)/;
const SECONDS_OF_WORK = 15;

test.use({ autoGoto: true });

test('status bar and live panel follow a measured cell', async ({
  page,
  tmpPath
}) => {
  test.setTimeout(180_000);
  // Created under its final name, so the kernel's session knows the real path.
  const notebook = `${tmpPath}/carbon.ipynb`;
  // A one-cell notebook that names its kernel, so opening it starts one.
  await page.contents.uploadContent(notebookJson(['']), 'text', notebook);
  await page.notebook.openByPath(notebook);
  await page.notebook.activate('carbon.ipynb');
  const item = page.locator(STATUS_ITEM);

  // Write every cell first: running the last cell would append a new one.
  await page.notebook.setCell(0, 'code', 'import sys; sys.version');
  await page.notebook.addCell('code', '%load_ext carbon_magic');
  await page.notebook.addCell(
    'code',
    [
      '%%carbon --name busy-loop',
      'import time',
      'deadline = time.monotonic() + ' + SECONDS_OF_WORK,
      'total = 0',
      'while time.monotonic() < deadline:',
      '    total += sum(i * i for i in range(10_000))'
    ].join('\n')
  );
  // A second measured cell: its panel uses a widget prepared in the background.
  await page.notebook.addCell(
    'code',
    [
      '%%carbon --name second',
      'import time',
      'deadline = time.monotonic() + 6',
      'while time.monotonic() < deadline:',
      '    sum(i * i for i in range(10_000))'
    ].join('\n')
  );

  // A kernel without the tracker: the item is a hint (the server answers 404).
  await page.notebook.runCell(0);
  await expect(item).toHaveText('carbon: %load_ext carbon_magic', {
    timeout: 30_000
  });

  await page.notebook.runCell(1);
  await expectOrExplain(page, 1, () =>
    expect(item).toHaveText(WATTS_AND_GRAMS, { timeout: 30_000 })
  );

  const run = page.notebook.runCell(2);

  // The live panel (an ipywidgets HTML output) shows watts and emissions...
  const panel = page.locator('.carbon-magic-panel').first();
  const emissions = panel.locator('.cm-emissions');
  await expect(emissions).toHaveText(GRAMS_RANGE, { timeout: 30_000 });
  await expect(panel.locator('.cm-watts')).toContainText('W');
  // ...and they move while the cell runs.
  const first = await emissions.textContent();
  await expect
    .poll(async () => emissions.textContent(), { timeout: 8_000 })
    .not.toBe(first);

  // The power sparkline moves too (the panel's HTML is one simple trait).
  const spark = panel.locator('svg.cm-spark polyline');
  await expect(spark).toBeAttached({ timeout: 15_000 });
  const line = await spark.getAttribute('points');
  await expect
    .poll(async () => spark.getAttribute('points'), { timeout: 8_000 })
    .not.toBe(line);

  // The status bar follows too.
  const before = await item.textContent();
  await expect(item).toHaveText(WATTS_AND_GRAMS);
  await expect
    .poll(async () => item.textContent(), { timeout: 8_000 })
    .not.toBe(before);
  await screenshotPanel(page);

  // Click: the popup details the kernel, with the server's total today.
  await item.click();
  const popup = page.locator('.cm-Popup');
  await expect(popup.locator('tr.cm-emissions td')).toHaveText(
    new RegExp(GRAMS_RANGE.source + ' CO₂e')
  );
  await expect(popup.locator('tr.cm-watts td')).toHaveText(
    /[\d.,]+\s(mW|W|kW)/
  );
  await expect(popup.locator('tr.cm-intensity td')).toContainText('g/kWh');
  await expect(popup.locator('tr.cm-state td')).toContainText('live');
  // The heartbeat says how large the ledger file is.
  await expect(popup.locator('tr.cm-ledger td')).toHaveText(
    /(< 0\.1|[\d.]+) MB on disk/
  );
  await expect(popup.locator('tr.cm-today td')).toHaveText(
    /(<\s)?[\d.,]+\s(mg|g|kg|t) CO₂e · (<\s)?[\d.,]+\s(mWh|Wh|kWh|MWh)/
  );
  await screenshotStatusBar(page);
  await page.keyboard.press('Escape');
  await run;
  await expect(panel).toHaveAttribute('data-state', 'ok');
  // The final, static panel (what the saved notebook keeps) has its sparkline.
  await expect(panel.locator('svg.cm-spark polyline')).toBeAttached();

  const second = page.notebook.runCell(3);
  const secondPanel = page
    .locator('.carbon-magic-panel', { hasText: 'second' })
    .first();
  const secondEmissions = secondPanel.locator('.cm-emissions');
  await expect(secondEmissions).toHaveText(GRAMS_RANGE, { timeout: 30_000 });
  const early = await secondEmissions.textContent();
  await expect
    .poll(async () => secondEmissions.textContent(), { timeout: 8_000 })
    .not.toBe(early);
  await second;
  await expect(secondPanel).toHaveAttribute('data-state', 'ok');

  // Hidden for other panels, back for the notebook.
  await page.evaluate(async () => {
    await (window as any).jupyterapp.commands.execute('launcher:create');
  });
  await expect(item).toBeHidden();
  await page.activity.activateTab('carbon.ipynb');
  await expect(item).toBeVisible();
  await expect(item).toHaveText(WATTS_AND_GRAMS);
});

/** Run an expectation; when it fails, say what a cell printed (its output). */
async function expectOrExplain(
  page: any,
  cell: number,
  expectation: () => Promise<void>
): Promise<void> {
  try {
    await expectation();
  } catch (error) {
    const output = await page.notebook
      .getCellLocator(cell)
      .then((locator: any) => locator?.locator('.jp-OutputArea').innerText())
      .catch(() => '(no output)');
    throw new Error(`${error}\n--- output of cell ${cell}:\n${output}`);
  }
}

/** The live panel; its HTML is replaced on every update, so retry a detached one. */
async function screenshotPanel(page: any): Promise<void> {
  const widget = page.locator('.carbon-magic-panel-widget').first();
  for (let attempt = 1; ; attempt++) {
    try {
      await widget.screenshot({ path: path.join(IMAGES, 'panel.png') });
      return;
    } catch (error) {
      if (attempt === 5) {
        throw error;
      }
    }
  }
}

/** The left of the status bar with the popup above it. */
async function screenshotStatusBar(page: any): Promise<void> {
  const bar = await page.locator('#jp-main-statusbar').boundingBox();
  const popup = await page.locator('.cm-Popup').boundingBox();
  if (!bar || !popup) {
    throw new Error('status bar or popup not on screen');
  }
  const top = Math.min(popup.y, bar.y) - 4;
  const width = Math.max(popup.x + popup.width, 520) + 8;
  await page.screenshot({
    path: path.join(IMAGES, 'statusbar.png'),
    clip: { x: 0, y: top, width, height: bar.y + bar.height - top }
  });
}
