/**
 * carbon_magic in JupyterLab and Notebook 7: a status item (the status bar in
 * JupyterLab, the top area in Notebook 7) with the active kernel's power and
 * emissions, a footer under every recorded cell and the Carbon sidebar.
 */
import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';
import {
  refreshIcon,
  settingsIcon,
  SidePanel,
  ToolbarButton
} from '@jupyterlab/ui-components';
import { Panel, Widget } from '@lumino/widgets';

import { DEFAULT_FOOTER_SETTINGS, IFooterSettings } from './cellformat';
import { NotebookCells } from './cells';
import { CellFooters } from './footers';
import { carbonIcon } from './icon';
import { CarbonModel, DEFAULT_REFRESH_MS } from './model';
import { ILiveFigures } from './live';
import { CarbonSidebar, SIDEBAR_ID } from './sidebar';
import { StatusPopup } from './statuspopup';
import { CarbonStatusItem } from './widgets';

const PLUGIN_ID = 'carbon_magic:plugin';
const OPEN_SIDEBAR = 'carbon-magic:open-sidebar';

/** What each open notebook gets: its recorded cells and their footers. */
interface INotebookCarbon {
  cells: NotebookCells;
  footers: CellFooters;
}

class Notebooks {
  constructor(private _footerSettings: IFooterSettings) {}

  get(panel: NotebookPanel): INotebookCarbon | undefined {
    return this._byPanel.get(panel);
  }

  /** Start following `panel` (once); stop when it closes. */
  add(panel: NotebookPanel): INotebookCarbon {
    const known = this._byPanel.get(panel);
    if (known) {
      return known;
    }
    const cells = new NotebookCells(
      () => panel.context.localPath,
      () => panel.isVisible
    );
    const footers = new CellFooters(panel, cells);
    footers.settings = this._footerSettings;
    const entry = { cells, footers };
    this._byPanel.set(panel, entry);
    panel.context.pathChanged.connect(() => cells.reset());
    panel.sessionContext.statusChanged.connect((_, status) => {
      if (status === 'idle' || status === 'restarting') {
        void cells.refresh();
      }
    });
    panel.disposed.connect(() => {
      footers.dispose();
      cells.dispose();
      this._byPanel.delete(panel);
    });
    return entry;
  }

  set footerSettings(value: IFooterSettings) {
    this._footerSettings = value;
    this._byPanel.forEach(entry => (entry.footers.settings = value));
  }

  private _byPanel = new Map<NotebookPanel, INotebookCarbon>();
}

/** Keep the model and the sidebar on the current notebook and its kernel. */
function followNotebooks(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  model: CarbonModel,
  notebooks: Notebooks,
  sidebar: CarbonSidebar,
  labShell: ILabShell | null
): void {
  let watched: NotebookPanel | null = null;

  const update = () => {
    const current = labShell ? labShell.currentWidget : tracker.currentWidget;
    const panel =
      current && tracker.has(current) ? (current as NotebookPanel) : null;
    if (panel !== watched) {
      if (watched) {
        watched.sessionContext.kernelChanged.disconnect(update);
        watched.sessionContext.statusChanged.disconnect(onStatus);
        showLive(watched, null);
      }
      watched = panel;
      if (panel) {
        panel.sessionContext.kernelChanged.connect(update);
        panel.sessionContext.statusChanged.connect(onStatus);
      }
    }
    const kernelId = panel?.sessionContext.session?.kernel?.id ?? null;
    model.setTarget(panel !== null, kernelId);
    const entry = panel ? notebooks.add(panel) : null;
    sidebar.follow(panel, entry?.cells ?? null);
    // Its poll stood by while the tab was hidden: catch up now.
    void entry?.cells.refresh();
  };

  const onStatus = (_: unknown, status: string) => {
    // A restart keeps the kernel id: ask again once the new process answers.
    if (status === 'idle' || status === 'restarting' || status === 'starting') {
      void model.refresh();
    }
    // A cell started or ended: its heartbeat follows within one sampling interval.
    if (status === 'busy' || status === 'idle') {
      model.kernelActivityChanged(status);
    }
  };

  const showLive = (panel: NotebookPanel, value: ILiveFigures | null) => {
    const entry = notebooks.get(panel);
    if (entry) {
      entry.footers.live = value;
    }
  };

  // The running cell's footer shows the kernel's live figures: the same power,
  // progress and time left as the status item, carried forward each second.
  const onLive = () => {
    if (!watched) {
      return;
    }
    const live = model.live;
    showLive(
      watched,
      live && live.figures.kernel_id === model.kernelId ? live : null
    );
  };
  model.changed.connect(onLive);
  model.clock.connect(onLive);

  // Each notebook gets its footers as a document widget extension, when it opens.
  app.docRegistry.addWidgetExtension('Notebook', {
    createNew: (panel: NotebookPanel) => {
      notebooks.add(panel);
    }
  });
  tracker.forEach(panel => notebooks.add(panel));
  tracker.currentChanged.connect(update);
  if (labShell) {
    labShell.currentChanged.connect(update);
  }
  void app.restored.then(update);
  update();
}

function footerSettings(settings: ISettingRegistry.ISettings): IFooterSettings {
  const get = <T>(name: keyof IFooterSettings): T =>
    (settings.get(name).composite ?? DEFAULT_FOOTER_SETTINGS[name]) as T;
  return {
    footers: get<boolean>('footers'),
    footerMinEmissionsG: Math.max(0, get<number>('footerMinEmissionsG') || 0),
    footerLead: get<string>('footerLead') === 'energy' ? 'energy' : 'emissions',
    footerMinSeconds: Math.max(0, get<number>('footerMinSeconds') || 0),
    footerHideMagics: get<boolean>('footerHideMagics')
  };
}

/** The sidebar in JupyterLab's standard side panel: a header, a toolbar (refresh,
 * settings) and the content. */
function sidebarPanel(app: JupyterFrontEnd, content: CarbonSidebar): SidePanel {
  // A plain panel as content (the default, an accordion, would add a title bar).
  const panel = new SidePanel({ content: new Panel() });
  panel.id = SIDEBAR_ID;
  panel.addClass('cm-SidePanel');
  panel.title.icon = carbonIcon;
  panel.title.caption = 'Carbon: the cost of this notebook’s cells';
  const heading = new Widget({ node: document.createElement('h2') });
  heading.node.textContent = 'Carbon';
  heading.addClass('jp-text-truncated');
  panel.header.addWidget(heading);
  panel.toolbar.addItem(
    'refresh',
    new ToolbarButton({
      icon: refreshIcon,
      tooltip: 'Fetch the cells and the kernel’s figures now',
      onClick: () => content.refresh()
    })
  );
  panel.toolbar.addItem(
    'settings',
    new ToolbarButton({
      icon: settingsIcon,
      tooltip: 'Carbon settings (footers, thresholds, refresh rate)',
      onClick: () =>
        void app.commands.execute('settingeditor:open', { query: 'Carbon' })
    })
  );
  panel.addWidget(content);
  return panel;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    'Energy and carbon of notebook cells: footers, a sidebar and a status item.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [
    IStatusBar,
    ILabShell,
    ISettingRegistry,
    ILayoutRestorer,
    ICommandPalette
  ],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    statusBar: IStatusBar | null,
    labShell: ILabShell | null,
    settingRegistry: ISettingRegistry | null,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null
  ) => {
    const model = new CarbonModel();
    const item = new CarbonStatusItem(model);
    const notebooks = new Notebooks(DEFAULT_FOOTER_SETTINGS);

    const sidebar = new CarbonSidebar(model);
    const panel = sidebarPanel(app, sidebar);
    app.shell.add(panel, 'right', { rank: 900 });
    // Open again after a reload if it was open (JupyterLab's layout restorer).
    restorer?.add(panel, SIDEBAR_ID);
    app.commands.addCommand(OPEN_SIDEBAR, {
      label: 'Show Carbon Sidebar',
      caption: 'What the cells of the current notebook cost in energy and CO₂e',
      icon: carbonIcon,
      execute: () => app.shell.activateById(SIDEBAR_ID)
    });
    palette?.addItem({ command: OPEN_SIDEBAR, category: 'Carbon' });

    if (statusBar) {
      // JupyterLab: the status bar, with a popup of details.
      const popup = new StatusPopup(item, model);
      item.node.setAttribute('aria-haspopup', 'dialog');
      item.node.setAttribute('aria-expanded', 'false');
      item.node.addEventListener('click', () => popup.toggle());
      statusBar.registerStatusItem(PLUGIN_ID, {
        item,
        align: 'left',
        rank: 4,
        isActive: () => model.visible,
        activeStateChanged: model.changed
      });
    } else {
      // Notebook 7 has no status bar: the item sits in the top area and opens the
      // sidebar, which has every detail.
      item.addClass('cm-mod-top');
      item.node.addEventListener('click', () => {
        app.shell.activateById(SIDEBAR_ID);
      });
      const showWhenVisible = () => item.setHidden(!model.visible);
      model.changed.connect(showWhenVisible);
      showWhenVisible();
      app.shell.add(item, 'top', { rank: 900 });
    }
    item.node.tabIndex = 0;
    item.node.setAttribute('role', 'button');
    item.node.addEventListener('keydown', event => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        item.node.click();
      }
    });

    followNotebooks(app, tracker, model, notebooks, sidebar, labShell);

    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(settings => {
          const apply = () => {
            model.refreshRate =
              (settings.get('refreshRate').composite as number) ??
              DEFAULT_REFRESH_MS;
            notebooks.footerSettings = footerSettings(settings);
          };
          settings.changed.connect(apply);
          apply();
        })
        .catch(reason => {
          console.warn('carbon_magic: could not load settings', reason);
        });
    }
  }
};

export default plugin;
