/**
 * The running cell's prediction, where the kernel JSON carries one: the status item
 * and the running cell's footer show it, and the footer returns to the ledger's
 * figures when the cell ends; the sidebar draws the live power meanwhile. The prediction is added to the server's real answers
 * here (routing), as a server that predicts would send it.
 */
import { expect, test } from '@jupyterlab/galata';

import { busyCell, notebookJson } from './helpers';

test.use({ autoGoto: true });

const PREDICTION = {
  fraction: 0.42,
  emissions_g: 3.1,
  emissions_range_g: [2.5, 4],
  eta_s: 65
};

test('a prediction shows in the status item and the running cell', async ({
  page,
  tmpPath
}) => {
  test.setTimeout(180_000);
  await page.route(
    /carbon-magic\/api\/v1\/kernels\/[0-9a-f-]+(\?|$)/,
    async route => {
      const response = await route.fetch();
      if (response.status() !== 200) {
        await route.fulfill({ response });
        return;
      }
      const figures = await response.json();
      const running = figures.heartbeat?.running_cell ? PREDICTION : null;
      await route.fulfill({
        response,
        json: { ...figures, prediction: running }
      });
    }
  );
  const notebook = `${tmpPath}/predicted.ipynb`;
  await page.contents.uploadContent(
    notebookJson(['%load_ext carbon_magic', busyCell(20)]),
    'text',
    notebook
  );
  await page.notebook.openByPath(notebook);
  await page.notebook.activate('predicted.ipynb');
  await page.notebook.runCell(0);
  const item = page.locator('#jp-main-statusbar .cm-StatusItem');
  await expect(item).toHaveText(/^⚡ /, { timeout: 30_000 });

  // The sidebar, open while the cell runs, draws the live power as it comes.
  await page.click(`.jp-SideBar.jp-mod-right [data-id="carbon-magic-sidebar"]`);
  const sidebar = page.locator('#carbon-magic-sidebar');
  await expect(sidebar.locator('.cm-Sidebar-cell')).toHaveCount(0);

  const run = page.notebook.runCell(1);
  const footer = page.locator('.cm-CellFooter.cm-mod-running');
  // This run's footer: its time, the kernel's power now and the prediction, whose
  // time left counts down between answers.
  await expect(footer).toHaveText(
    /^⚡ running · [\d.]+\ss · [\d.,]+\s(mW|W|kW) now · ≈ \d+% · ≈ 3\.1\sg \(2\.5\sg–4\sg\) CO₂e at the end · 1\smin \d+\ss left$/,
    { timeout: 20_000 }
  );
  await expect(footer).toHaveAttribute('title', /Predicted by the kernel/);
  await expect(item).toHaveText(
    /^⚡ [\d.,]+\s(mW|W|kW) · [\d.,]+\s(mg|g|kg|t) CO₂e · \d+%$/
  );
  const live = sidebar.locator('polyline.cm-Timeline-live');
  await expect(live).toBeAttached({ timeout: 20_000 });
  const before = await live.getAttribute('points');
  await expect
    .poll(() => live.getAttribute('points'), { timeout: 10_000 })
    .not.toBe(before);
  await run;

  // Ended: the ledger's record replaces the prediction.
  await expect(page.locator('.cm-CellFooter.cm-mod-running')).toHaveCount(0, {
    timeout: 10_000
  });
  await expect(page.locator('.cm-CellFooter')).toHaveText(
    /^⚡ [\d.,]+\s(mg|g|kg) CO₂e · [\d.,]+\s(mWh|Wh|kWh) · [\d.,]+\ss$/
  );
  await expect(sidebar.locator('.cm-Sidebar-cell')).toHaveCount(1);
});
