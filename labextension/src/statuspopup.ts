/**
 * The status item's popup, as JupyterLab's own status popups behave: a click on the
 * item opens it and a second click closes it (never a second popup), Escape closes it
 * wherever the focus is, it takes the focus when it opens and gives it back to the
 * item when it closes.
 */
import { Popup, showPopup } from '@jupyterlab/statusbar';
import { Widget } from '@lumino/widgets';

import { CarbonModel } from './model';
import { CarbonPopupBody } from './widgets';

export class StatusPopup {
  constructor(
    private readonly _item: Widget,
    private readonly _model: CarbonModel
  ) {}

  get isOpen(): boolean {
    return this._popup !== null;
  }

  /** Open the popup, or close it when open. */
  toggle(): void {
    if (this._popup) {
      this.close();
    } else {
      this.open();
    }
  }

  open(): void {
    if (this._popup) {
      return;
    }
    const body = new CarbonPopupBody(this._model);
    body.node.tabIndex = -1;
    body.node.setAttribute('role', 'dialog');
    body.node.setAttribute('aria-label', 'Carbon of this kernel');
    const popup = showPopup({ body, anchor: this._item, align: 'left' });
    this._popup = popup;
    this._item.node.setAttribute('aria-expanded', 'true');
    this._model.wantSummary = true;
    document.addEventListener('keydown', this._onKey, true);
    popup.disposed.connect(() => {
      document.removeEventListener('keydown', this._onKey, true);
      this._popup = null;
      this._item.node.setAttribute('aria-expanded', 'false');
      this._model.wantSummary = false;
      const hadFocus = body.node.contains(document.activeElement);
      body.dispose();
      if (hadFocus || document.activeElement === document.body) {
        this._item.node.focus();
      }
    });
    body.node.focus();
  }

  close(): void {
    this._popup?.dispose();
  }

  private _onKey = (event: KeyboardEvent): void => {
    if (event.key === 'Escape' && this._popup) {
      event.preventDefault();
      event.stopPropagation();
      this.close();
    }
  };

  private _popup: Popup | null = null;
}
