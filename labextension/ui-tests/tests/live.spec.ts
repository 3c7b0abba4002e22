/**
 * JupyterLab: one set of live figures. While a tqdm cell runs, the status item, its
 * popup and the running cell's footer show the same power, progress and time left,
 * and the live panel the same power within a beat; once the cell ends the status item
 * shows the idle kernel within 2 s. The popup toggles and closes on Escape, the sidebar
 * opens from the command palette and comes back after a reload, and every text drawn
 * by the extension has a contrast of at least 4.5:1 in the light and dark themes (with
 * a day cap set: the status item says what is left today, the sidebar and the popup
 * show the cap as a meter).
 */
import { expect, test } from '@jupyterlab/galata';
import * as path from 'path';

import {
  LAB_SURFACES,
  LIVE_CELL_STEPS,
  SCREENSHOTS,
  contrasts,
  expectOneSetOfLiveFigures,
  notebookJson,
  tqdmCell
} from './helpers';

test.use({ autoGoto: true });

const STATUS_ITEM = LAB_SURFACES.status;
const POPUP = '.cm-Popup';
const SIDEBAR = '#carbon-magic-sidebar';

const TQDM_CELL = tqdmCell(LIVE_CELL_STEPS);

async function openNotebook(page: any, tmpPath: string, name: string) {
  const notebook = `${tmpPath}/${name}`;
  await page.contents.uploadContent(
    notebookJson(['%load_ext carbon_magic', TQDM_CELL]),
    'text',
    notebook
  );
  await page.notebook.openByPath(notebook);
  await page.notebook.activate(name);
  return notebook;
}

test('the four live surfaces agree, and the idle kernel shows within 2 s', async ({
  page,
  tmpPath
}) => {
  test.setTimeout(240_000);
  await openNotebook(page, tmpPath, 'live.ipynb');
  await page.notebook.runCell(0);
  const item = page.locator(STATUS_ITEM);
  await expect(item).toHaveText(/^⚡ /, { timeout: 30_000 });

  // Popup: a click opens it, a second click closes it (never two), Escape closes it
  // and gives the focus back to the item.
  await item.click();
  await expect(page.locator(POPUP)).toHaveCount(1);
  await item.click();
  await expect(page.locator(POPUP)).toHaveCount(0);
  await item.click();
  await expect(page.locator(POPUP)).toHaveCount(1);
  await expect(page.locator(POPUP)).toBeFocused();
  await page.keyboard.press('Escape');
  await expect(page.locator(POPUP)).toHaveCount(0);
  await expect(item).toBeFocused();
  await expect(item).toHaveAttribute('aria-expanded', 'false');

  // Run the tqdm cell with the popup open (a command, not a click, keeps it open).
  await page.evaluate(() => {
    const panel = (window as any).jupyterapp.shell.currentWidget;
    panel.content.activeCellIndex = 1;
  });
  await item.click();
  await expect(page.locator(POPUP)).toHaveCount(1);
  await expectOneSetOfLiveFigures(page, LAB_SURFACES, 1, () =>
    page.locator(POPUP).screenshot({
      path: path.join(SCREENSHOTS, 'popup.png')
    })
  );
  await page.keyboard.press('Escape');

  const cell = await page.notebook.getCellLocator(1);
  await cell!.locator('.carbon-magic-panel').screenshot({
    path: path.join(SCREENSHOTS, 'panel.png')
  });
});

test('the sidebar opens from the palette and is restored after a reload', async ({
  page,
  tmpPath
}) => {
  test.setTimeout(120_000);
  await openNotebook(page, tmpPath, 'palette.ipynb');
  const sidebar = page.locator(SIDEBAR);
  await expect(sidebar).toBeHidden();
  // The modal palette closes when focus moves (the notebook may still be taking it
  // while it opens): open it again until it shows.
  const input = page.locator('.lm-CommandPalette-input');
  await expect(async () => {
    if (!(await input.isVisible())) {
      await page.evaluate(() =>
        (window as any).jupyterapp.commands.execute(
          'apputils:activate-command-palette'
        )
      );
    }
    await expect(input).toBeVisible({ timeout: 2_000 });
  }).toPass({ timeout: 30_000 });
  await input.fill('Show Carbon Sidebar');
  // The layout is saved to the workspace once the sidebar is open.
  const saved = page.waitForRequest(
    (request: any) =>
      request.url().includes('/lab/api/workspaces') &&
      request.method() === 'PUT' &&
      (request.postData() ?? '').includes('carbon-magic-sidebar')
  );
  await page.keyboard.press('Enter');
  await expect(sidebar).toBeVisible();
  await saved;
  // JupyterLab's standard side panel: a header and a toolbar.
  await expect(sidebar.locator('.jp-SidePanel-header')).toHaveText('Carbon');
  await expect(sidebar.locator('.jp-SidePanel-toolbar button')).toHaveCount(2);

  await page.evaluate(() => window.location.reload());
  await page.waitForFunction(() => (window as any).jupyterapp?.commands);
  await page.evaluate(() => (window as any).jupyterapp.restored);
  await expect(page.locator(SIDEBAR)).toBeVisible({ timeout: 30_000 });
});

test('every text of the extension has a contrast of at least 4.5:1', async ({
  page,
  tmpPath
}) => {
  test.setTimeout(180_000);
  const notebook = `${tmpPath}/contrast.ipynb`;
  await page.contents.uploadContent(
    notebookJson([
      // A day cap, well within; then one long spent (the ledger holds every test's cells).
      '%load_ext carbon_magic\n%carbon config budget_day=10kg',
      'import time\ndeadline = time.monotonic() + 1.5\nwhile time.monotonic() < deadline:\n    sum(i * i for i in range(10_000))',
      '%carbon config budget_day=1ug'
    ]),
    'text',
    notebook
  );
  await page.notebook.openByPath(notebook);
  await page.notebook.activate('contrast.ipynb');
  await page.notebook.runCell(0);
  await page.notebook.runCell(1);
  await expect(page.locator('.cm-CellFooter')).toHaveCount(1, {
    timeout: 20_000
  });
  // The status item says what is left of the day cap, and names it for screen readers.
  const day = page.locator(`${STATUS_ITEM} .cm-StatusItem-day`);
  await expect(day).toHaveText(/^10\skg left today$/, { timeout: 10_000 });
  await expect(day).toHaveClass(/cm-mod-ok/);
  await expect(page.locator(STATUS_ITEM)).toHaveAttribute(
    'aria-label',
    /· Day budget: .* spent of 10\skg CO₂e \(0%\), 10\skg CO₂e left\.$/
  );
  await page.evaluate(() =>
    (window as any).jupyterapp.commands.execute('carbon-magic:open-sidebar')
  );
  const sidebar = page.locator(SIDEBAR);
  await expect(sidebar.locator('.cm-Sidebar-cell')).toHaveCount(1);
  await page.notebook.runCell(2);
  // The server reads what was spent from the ledger at most every 10 s.
  await expect(day).toHaveText('no budget left today', { timeout: 30_000 });
  await expect(day).toHaveClass(/cm-mod-spent/);
  // The sidebar and the popup show the cap as a meter.
  const meter = sidebar.locator('.cm-Cap [role="meter"]');
  await expect(meter).toHaveAttribute('aria-label', 'Day budget');
  await expect(meter).toHaveAttribute(
    'aria-valuetext',
    /^Day budget: .*, spent$/
  );
  await page.locator(STATUS_ITEM).click();
  await expect(
    page.locator(`${POPUP} tr.cm-cap [role="meter"]`)
  ).toHaveAttribute('aria-valuemax', '0.000001');
  await page.keyboard.press('Escape');
  // The chip near the cap (a copy beside the item: the item redraws on each answer).
  await page.evaluate(() => {
    const chip = document.querySelector('.cm-StatusItem-day')!;
    const probe = chip.cloneNode(true) as HTMLElement;
    probe.id = 'cm-warn-probe';
    probe.className = 'cm-StatusItem-day cm-mod-warn';
    chip.closest('.cm-StatusItem')!.parentElement!.appendChild(probe);
  });
  const selectors = [
    '.cm-CellFooter .cm-CellFooter-text',
    STATUS_ITEM,
    `${STATUS_ITEM} .cm-StatusItem-day`,
    '#cm-warn-probe',
    `${SIDEBAR} .cm-Cap-figures`,
    `${SIDEBAR} .cm-Sidebar-index`,
    `${SIDEBAR} .cm-Sidebar-figures`,
    `${SIDEBAR} .cm-Sidebar-notebook`,
    `${SIDEBAR} .cm-Timeline-label`
  ];
  // The timeline is drawn at its width in pixels: text keeps its size (scale 1:1).
  // Read from the timeline on the page at each try: each answer redraws it, and a
  // replaced drawing measures 0 wide.
  await expect
    .poll(
      () =>
        page.evaluate((where: string) => {
          const svg = document.querySelector(
            `${where} svg.cm-Timeline`
          ) as SVGSVGElement | null;
          return svg
            ? Math.abs(
                svg.getBoundingClientRect().width / svg.viewBox.baseVal.width -
                  1
              )
            : Infinity;
        }, SIDEBAR),
      { timeout: 10_000 }
    )
    .toBeLessThan(0.02);
  for (const theme of ['light', 'dark']) {
    if (theme === 'dark') {
      await page.theme.setDarkTheme();
    }
    const ratios = await contrasts(page, selectors);
    for (const selector of selectors) {
      expect(ratios[selector], `${theme}: ${selector}`).toBeGreaterThanOrEqual(
        4.5
      );
    }
    await sidebar.screenshot({
      path: path.join(SCREENSHOTS, `sidebar-timeline-${theme}.png`)
    });
  }
  await page.theme.setLightTheme();
});
