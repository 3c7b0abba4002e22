/**
 * Notebook 7: the status indicator in the top area, footers under auto-recorded cells
 * with the ledger's figures (after a reload too), and the sidebar it opens. Notebook 7
 * has no status bar: its live surfaces are the indicator in the top area (no popup: it
 * opens the sidebar), the running cell's footer and the %%carbon panel, and they show
 * one set of figures during a tqdm cell, and the idle kernel within 2 s of its end.
 *
 * Plain Playwright (Galata drives JupyterLab): the same server serves /notebooks/.
 */
import { expect, test } from '@playwright/test';
import * as path from 'path';

import {
  ILiveSurfaces,
  LIVE_CELL_STEPS,
  SCREENSHOTS,
  busyCell,
  contrasts,
  expectOneSetOfLiveFigures,
  expectedFooterTexts,
  latestByCellId,
  ledgerCells,
  notebookJson,
  runCellMarkingEnd,
  tqdmCell
} from './helpers';

// The server Playwright starts (webServer in playwright.config.js).
test.use({ baseURL: process.env.TARGET_URL ?? 'http://localhost:8888' });

const TOP_ITEM = '.cm-StatusItem.cm-mod-top';
const FOOTER = '.cm-CellFooter';
const WATTS_AND_GRAMS =
  /^⚡ [\d.,]+\s(mW|W|kW) · (<\s)?[\d.,]+\s(mg|g|kg|t) CO₂e$/;
/** The indicator in the top area, and no popup. */
const TOP_SURFACES: ILiveSurfaces = {
  status: TOP_ITEM,
  popupPower: null,
  popupPredicted: null,
  popupRunning: null
};

/** Uploads `json` as `notebook`, in a new folder `folder`. */
async function uploadNotebook(
  request: any,
  folder: string,
  notebook: string,
  json: string
): Promise<void> {
  expect(
    (
      await request.put(`/api/contents/${folder}`, {
        data: { type: 'directory' }
      })
    ).ok()
  ).toBe(true);
  const upload = await request.put(`/api/contents/${notebook}`, {
    data: { type: 'notebook', format: 'json', content: JSON.parse(json) }
  });
  expect(upload.ok()).toBe(true);
}

/** Shuts down the kernels of `folder`'s notebooks, and deletes `notebook` and it. */
async function removeNotebook(
  request: any,
  folder: string,
  notebook: string
): Promise<void> {
  const sessions = await (await request.get('/api/sessions')).json();
  for (const session of sessions) {
    if (session.path.startsWith(folder)) {
      await request.delete(`/api/sessions/${session.id}`);
    }
  }
  await request.delete(`/api/contents/${notebook}`);
  await request.delete(`/api/contents/${folder}`);
}

/** Opens `notebook` and waits for its idle kernel and the app's commands. */
async function openNotebook(page: any, notebook: string, cells: number) {
  await page.goto(`/notebooks/${notebook}`);
  await expect(page.locator('.jp-Notebook .jp-Cell')).toHaveCount(cells, {
    timeout: 60_000
  });
  await expect(
    page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]')
  ).toBeAttached({ timeout: 60_000 });
  await page.waitForFunction(
    () => (window as any).jupyterapp?.shell?.currentWidget?.content,
    null,
    { timeout: 30_000 }
  );
}

test('Notebook 7 shows the indicator, the footers and the sidebar', async ({
  page,
  request
}) => {
  test.setTimeout(180_000);
  const folder = `notebook7-${Date.now()}`;
  const notebook = `${folder}/footers.ipynb`;
  const json = notebookJson([
    'x = 1',
    '%load_ext carbon_magic',
    busyCell(0.5),
    busyCell(1.5),
    busyCell(2)
  ]);
  const ids: string[] = JSON.parse(json).cells.map((cell: any) => cell.id);
  await uploadNotebook(request, folder, notebook, json);

  // Errors thrown from this extension's code (Notebook 7's own core throws one on load
  // here, extension or not).
  const errors: string[] = [];
  page.on('pageerror', error => {
    const stack = String(error.stack ?? error);
    if (stack.includes('carbon_magic')) {
      errors.push(stack);
    }
  });
  try {
    // The file browser page: nothing to show, and nothing breaks.
    await page.goto(`/tree/${folder}`);
    await expect(page.locator('.jp-DirListing-item')).toHaveCount(1, {
      timeout: 60_000
    });
    await expect(page.locator(TOP_ITEM)).toBeHidden();

    await openNotebook(page, notebook, 5);

    // Run every cell from the Run menu.
    await page.locator('.lm-MenuBar-itemLabel', { hasText: /^Run$/ }).click();
    await page
      .locator('.lm-Menu-itemLabel', { hasText: /^Run All Cells$/ })
      .click();

    // Footers under the cells of a second or more (the half-second one is below the
    // threshold), in one unit.
    const cells = page.locator('.jp-Notebook .jp-Cell');
    // (Recorded footers: a running cell's footer shows once it has run a second.)
    await expect(page.locator(`${FOOTER}:not(.cm-mod-running)`)).toHaveCount(
      2,
      {
        timeout: 60_000
      }
    );
    const latest = latestByCellId(await ledgerCells(page, notebook));
    expect(latest.get(ids[0])).toBeUndefined();
    expect(latest.get(ids[1])).toBeUndefined();
    const sources = JSON.parse(json).cells.map((cell: any) => cell.source);
    const expected = new Map(
      expectedFooterTexts(
        ids.map((id, index) => ({
          index,
          record: latest.get(id),
          source: sources[index]
        }))
      )
    );
    expect([...expected.keys()]).toEqual([3, 4]);
    for (const index of ids.keys()) {
      const footer = cells.nth(index).locator(`:scope > ${FOOTER}`);
      if (expected.has(index)) {
        await expect(footer).toHaveText(expected.get(index)!);
      } else {
        await expect(footer).toHaveCount(0);
      }
    }

    // The top area's indicator: power now and emissions so far of this kernel.
    const item = page.locator(TOP_ITEM);
    await expect(item).toHaveText(WATTS_AND_GRAMS, { timeout: 30_000 });
    await expect(item).toHaveAttribute('role', 'button');
    // Enter opens the sidebar, with every recorded cell of the notebook.
    await item.focus();
    await page.keyboard.press('Enter');
    const sidebar = page.locator('#carbon-magic-sidebar');
    await expect(sidebar).toBeVisible();
    await expect(sidebar.locator('.cm-Sidebar-cell')).toHaveCount(3);
    await expect(sidebar.locator('.cm-Sidebar-index')).toHaveText([
      '[3]',
      '[4]',
      '[5]'
    ]);
    await page.screenshot({ path: path.join(SCREENSHOTS, 'notebook7.png') });

    // Every text at least 4.5:1 against what it is drawn on, light and dark.
    const texts = [
      `${FOOTER} .cm-CellFooter-text`,
      TOP_ITEM,
      '#carbon-magic-sidebar .cm-Sidebar-index',
      '#carbon-magic-sidebar .cm-Sidebar-figures',
      '#carbon-magic-sidebar .cm-Timeline-label'
    ];
    for (const theme of ['JupyterLab Light', 'JupyterLab Dark']) {
      // Settings → Theme, as a user switches it.
      await page
        .locator('.lm-MenuBar-itemLabel', { hasText: /^Settings$/ })
        .click();
      await page.locator('.lm-Menu-itemLabel', { hasText: /^Theme$/ }).hover();
      await page
        .locator('.lm-Menu-itemLabel', { hasText: new RegExp(`^${theme}$`) })
        .click();
      await expect(page.locator('body')).toHaveAttribute(
        'data-jp-theme-name',
        theme
      );
      const ratios = await contrasts(page, texts);
      for (const selector of texts) {
        expect(
          ratios[selector],
          `${theme}: ${selector}`
        ).toBeGreaterThanOrEqual(4.5);
      }
    }
    await page.screenshot({
      path: path.join(SCREENSHOTS, 'notebook7-dark.png')
    });
    await page
      .locator('.lm-MenuBar-itemLabel', { hasText: /^Settings$/ })
      .click();
    await page.locator('.lm-Menu-itemLabel', { hasText: /^Theme$/ }).hover();
    await page
      .locator('.lm-Menu-itemLabel', { hasText: /^JupyterLab Light$/ })
      .click();

    expect(errors).toEqual([]);

    // A reload: the footers come back from the ledger.
    await page.reload();
    await expect(page.locator(FOOTER)).toHaveCount(2, { timeout: 60_000 });
    await expect(cells.nth(4).locator(`:scope > ${FOOTER}`)).toHaveText(
      expected.get(4)!
    );
  } finally {
    await removeNotebook(request, folder, notebook);
  }
});

test('Notebook 7: the live surfaces agree, and the idle kernel shows within 2 s', async ({
  page,
  request
}) => {
  test.setTimeout(180_000);
  const folder = `notebook7-live-${Date.now()}`;
  const notebook = `${folder}/live.ipynb`;
  await uploadNotebook(
    request,
    folder,
    notebook,
    notebookJson(['%load_ext carbon_magic', tqdmCell(LIVE_CELL_STEPS)])
  );
  try {
    await openNotebook(page, notebook, 2);
    await runCellMarkingEnd(page, 0);
    await expect(page.locator(TOP_ITEM)).toHaveText(/^⚡ /, {
      timeout: 30_000
    });
    // The top indicator, the running cell's footer and the panel: one set of figures.
    await expectOneSetOfLiveFigures(page, TOP_SURFACES, 1);
  } finally {
    await removeNotebook(request, folder, notebook);
  }
});
