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

import { SCREENSHOTS, contrasts, notebookJson, plain } from './helpers';

test.use({ autoGoto: true });

const STATUS_ITEM = '#jp-main-statusbar .cm-StatusItem';
const POPUP = '.cm-Popup';
const SIDEBAR = '#carbon-magic-sidebar';

const TQDM_CELL = [
  '%%carbon --name fit',
  'import time',
  'from tqdm import tqdm',
  'for step in tqdm(range(60)):',
  '    deadline = time.monotonic() + 0.2',
  '    while time.monotonic() < deadline:',
  '        sum(i * i for i in range(10_000))'
].join('\n');

/** Watts in a text (`2.5 W`, `500 mW`), or null. */
function watts(text: string): number | null {
  const match = /([\d.,]+)\s(mW|W|kW)\b/.exec(plain(text));
  if (!match) {
    return null;
  }
  const scale: Record<string, number> = { mW: 1e-3, W: 1, kW: 1e3 };
  return Number(match[1].replace(/,/g, '')) * scale[match[2]];
}

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
  const ran = page.evaluate(() =>
    (window as any).jupyterapp.commands
      .execute('notebook:run-cell')
      .then(() => ((window as any).__cmDoneAt = performance.now()))
  );

  // Sample every surface together, in one task of the page, four times a second.
  const samples: any[] = await page.evaluate(async () => {
    const text = (selector: string) =>
      document.querySelector(selector)?.textContent ?? null;
    const taken: any[] = [];
    const until = performance.now() + 9_000;
    while (performance.now() < until) {
      const tqdmText = Array.from(
        document.querySelectorAll('.jp-OutputArea-output[data-mime-type]')
      )
        .map(node => node.textContent ?? '')
        .filter(t => /\d+%\|/.test(t))
        .pop();
      taken.push({
        at: performance.now(),
        status: text('#jp-main-statusbar .cm-StatusItem'),
        popupPower: text('.cm-Popup tr.cm-watts td'),
        popupPredicted: text('.cm-Popup tr.cm-prediction td'),
        footer: text('.cm-CellFooter.cm-mod-running .cm-CellFooter-text'),
        panel: text('.carbon-magic-panel .cm-watts b'),
        tqdm: tqdmText ?? null
      });
      await new Promise(resolve => setTimeout(resolve, 250));
    }
    return taken;
  });
  await page.locator(POPUP).screenshot({
    path: path.join(SCREENSHOTS, 'popup.png')
  });

  // Samples once the kernel's figures say the cell runs (the footer shows its power).
  const running = samples.filter(
    s => s.footer?.includes(' now') && s.popupPower && s.status
  );
  expect(running.length).toBeGreaterThan(10);
  let predicted = 0;
  for (const s of running) {
    // Status item, popup and footer: one source, the same figures at the same moment.
    const power = watts(s.status);
    expect(power).not.toBeNull();
    expect(watts(s.popupPower)).toBe(power);
    expect(watts(s.footer)).toBe(power);
    const percent = /· (\d+)%$/.exec(s.status)?.[1];
    if (percent) {
      predicted += 1;
      expect(s.footer).toContain(`≈ ${percent}%`);
      expect(s.popupPredicted).toContain(`≈ ${percent}%`);
      const left = /([^·]+) left$/.exec(plain(s.footer))?.[1].trim();
      expect(plain(s.popupPredicted)).toContain(`${left} left`);
      // tqdm's own count, at most a beat and a poll (2 s of 12 s: 17 points) apart.
      const tqdm = [...(s.tqdm ?? '').matchAll(/(\d+)%\|/g)].pop()?.[1];
      if (tqdm) {
        expect(Math.abs(Number(tqdm) - Number(percent))).toBeLessThanOrEqual(
          17
        );
      }
    }
    // The live panel showed the same reading at most one beat and one poll before.
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
  await ran;

  // The cell ended: within 2 s of its reply the status item shows the idle
  // kernel (well under the busy power), and the popup no running cell.
  const busy = Math.max(...running.map(s => watts(s.status) ?? 0));
  const idleAfterMs: number = await page.evaluate(async busyWatts => {
    // The cell's end, as the page learnt it (its execute reply).
    const idleAt: number = (window as any).__cmDoneAt;
    const parse = (text: string) => {
      const m = /([\d.,]+)\s(mW|W|kW)\b/.exec(text.replace(/\u00a0/g, ' '));
      const scale: Record<string, number> = { mW: 1e-3, W: 1, kW: 1e3 };
      return m ? Number(m[1].replace(/,/g, '')) * scale[m[2]] : NaN;
    };
    while (performance.now() - idleAt < 10_000) {
      const status =
        document.querySelector('#jp-main-statusbar .cm-StatusItem')
          ?.textContent ?? '';
      const runningRow = document.querySelector('.cm-Popup tr.cm-running');
      if (parse(status) < busyWatts / 2 && !runningRow) {
        return performance.now() - idleAt;
      }
      await new Promise(resolve => setTimeout(resolve, 50));
    }
    return Infinity;
  }, busy);
  expect(idleAfterMs).toBeLessThan(2_000);
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
  await page.evaluate(() =>
    (window as any).jupyterapp.commands.execute(
      'apputils:activate-command-palette'
    )
  );
  await page.locator('.lm-CommandPalette-input').fill('Show Carbon Sidebar');
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
  const scale = await sidebar
    .locator('svg.cm-Timeline')
    .evaluate(
      (svg: any) =>
        svg.getBoundingClientRect().width / svg.viewBox.baseVal.width
    );
  expect(Math.abs(scale - 1)).toBeLessThan(0.02);
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
