/**
 * carbon_magic status bar: power now and emissions so far of the active
 * notebook's kernel, from the server extension; click for details.
 */
import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar, showPopup } from '@jupyterlab/statusbar';

import { CarbonModel, DEFAULT_REFRESH_MS } from './model';
import { CarbonPopupBody, CarbonStatusItem } from './widgets';

const PLUGIN_ID = 'carbon_magic:plugin';

/** Keep the model on the current notebook's kernel. */
function followNotebooks(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  model: CarbonModel,
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
      }
      watched = panel;
      if (panel) {
        panel.sessionContext.kernelChanged.connect(update);
        panel.sessionContext.statusChanged.connect(onStatus);
      }
    }
    const kernelId = panel?.sessionContext.session?.kernel?.id ?? null;
    model.setTarget(panel !== null, kernelId);
  };

  const onStatus = (_: unknown, status: string) => {
    // A restart keeps the kernel id: ask again once the new process answers.
    if (status === 'idle' || status === 'restarting' || status === 'starting') {
      void model.refresh();
    }
  };

  tracker.currentChanged.connect(update);
  if (labShell) {
    labShell.currentChanged.connect(update);
  }
  void app.restored.then(update);
  update();
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    "Energy and carbon of the active notebook's kernel in the status bar.",
  autoStart: true,
  requires: [IStatusBar, INotebookTracker],
  optional: [ILabShell, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    statusBar: IStatusBar,
    tracker: INotebookTracker,
    labShell: ILabShell | null,
    settingRegistry: ISettingRegistry | null
  ) => {
    const model = new CarbonModel();
    const item = new CarbonStatusItem(model);

    item.node.addEventListener('click', () => {
      const body = new CarbonPopupBody(model);
      const popup = showPopup({ body, anchor: item, align: 'left' });
      model.wantSummary = true;
      popup.disposed.connect(() => {
        model.wantSummary = false;
        body.dispose();
      });
    });

    statusBar.registerStatusItem(PLUGIN_ID, {
      item,
      align: 'left',
      rank: 4,
      isActive: () => model.visible,
      activeStateChanged: model.changed
    });

    followNotebooks(app, tracker, model, labShell);

    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(settings => {
          const apply = () => {
            model.refreshRate =
              (settings.get('refreshRate').composite as number) ??
              DEFAULT_REFRESH_MS;
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
