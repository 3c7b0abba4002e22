"""The live panel of a ``%%carbon`` cell, and its plain-text fallback.

While the cell runs, the panel is an ipywidgets ``HTML`` widget whose single ``value``
trait is set from the tracker thread (under ``hold_sync``): a simple trait, so each
update is one small comm message. When the cell ends the displayed output is replaced
(``update_display``) by the same HTML as plain output, so the final state and status
survive in the saved notebook without saved widget state.
"""

from __future__ import annotations

import html
import math
import threading
import uuid
from collections.abc import Sequence
from typing import Any

from carbon_magic.cluster.combine import describe as describe_cluster
from carbon_magic.engine.measurement import Measurement
from carbon_magic.formatting import (
    format_duration,
    format_grams,
    format_grams_range,
    format_kwh,
    format_watts,
)
from carbon_magic.kernel.scope_budgets import ScopeState
from carbon_magic.remote.describe import describe_remote

# JupyterLab's theme variables (with fallbacks for other frontends), so the panel
# follows every theme: the same ink, sizes and accent colours as the rest of the page.
_STYLE = (
    "font-family: var(--jp-ui-font-family, sans-serif); "
    "font-size: var(--jp-ui-font-size1, 13px); color: var(--jp-ui-font-color1, inherit); "
    "border-left: 3px solid {colour}; padding: 4px 8px; margin: 2px 0; line-height: 1.5"
)
_COLOURS = {
    "running": "var(--jp-brand-color1, #1976d2)",
    "ok": "var(--jp-brand-color1, #1976d2)",
    "warning": "var(--jp-warn-color1, #ef6c00)",
    "error": "var(--jp-error-color1, #c62828)",
}
_HEADLINE = "font-size: var(--jp-ui-font-size3, 16px); white-space: nowrap"
_QUIET = "color: var(--jp-ui-font-color1, inherit); font-size: var(--jp-ui-font-size0, 11px)"


def panel_html(
    m: Measurement,
    watts: dict[str, float],
    state: str,
    budget_text: str | None = None,
    note: str | None = None,
    hint: str | None = None,
    title: str | None = None,
    prediction: str | None = None,
    power: Sequence[tuple[float, float]] | None = None,
    budget_fraction: float | None = None,
    caps: Sequence[ScopeState] = (),
) -> str:
    """The panel's HTML for a window so far (``state``: running or the final status);
    ``title`` defaults to the measurement's name; ``prediction`` is the line predicting
    the total at completion, shown under the emissions. ``power`` is the window's total
    power over time, ``(UTC epoch seconds, watts)`` (see :func:`window_power`), drawn as a
    sparkline; ``budget_fraction`` the share of the budget used, drawn as a bar; ``caps``
    the notebook and day caps, a small bar each, under the cell budget.

    Shape before text: the emissions are the headline, then the prediction and the
    budget, then the power now and over time; how the figures were obtained (energy,
    embodied share, grid, methods, cluster) sits in a collapsed details part."""
    colour = _COLOURS["warning" if note else ("ok" if state in ("running", "ok") else "error")]
    watts_text = " · ".join(f"{name.upper()} {format_watts(w)}" for name, w in watts.items())
    total_w = sum(watts.values())
    low, high = m.emissions_range_g
    rows = [
        (
            "cm-header",
            f"⚡ <b>{html.escape(title or m.name or 'cell')}</b> · "
            f"<span class='cm-state'>{html.escape(state)}</span> · "
            f"<span class='cm-elapsed'>{format_duration(m.duration_s)}</span>",
        ),
        (
            "cm-emissions",
            f"<span style='{_HEADLINE}'><b>"
            f"{html.escape(format_grams_range(m.emissions_g, low, high))}</b> CO₂e</span>",
        ),
    ]
    if prediction:
        rows.append(("cm-prediction", html.escape(prediction)))
    if budget_text:
        bar = "" if budget_fraction is None else budget_bar_html(budget_fraction)
        rows.append(("cm-budget", bar + html.escape(budget_text)))
    if caps:
        rows.append(("cm-caps", caps_html(caps)))
    if state == "running" and power is not None and not power:
        # No reading of this cell yet: not the 0 W of a reading that did not happen.
        rows.append(("cm-watts", "power now <b>measuring…</b>"))
    else:
        rows.append(
            (
                "cm-watts",
                f"power now <b style='white-space: nowrap'>{format_watts(total_w)}</b> "
                f"<span style='{_QUIET}'>({html.escape(watts_text)})</span>",
            )
        )
    if power is not None:
        rows.append(("cm-sparkline", sparkline_svg(power)))
    if note:
        rows.append(("cm-note", f"<b>{html.escape(note)}</b>"))
    if hint:
        rows.append(("cm-hint", html.escape(hint)))
    details = [
        (
            "cm-energy",
            f"energy <b>{format_kwh(m.energy_kwh)}</b> "
            f"({format_kwh(m.energy_range_kwh[0])}–{format_kwh(m.energy_range_kwh[1])}, "
            f"PUE {m.pue:g})",
        ),
        (
            "cm-embodied",
            f"+ embodied {format_grams(m.embodied_g)} CO₂e (manufacturing, amortised, shown apart)",
        ),
        (
            "cm-intensity",
            f"grid {m.intensity_g_per_kwh:.0f} g/kWh · {html.escape(m.intensity_source)}",
        ),
        (
            "cm-methods",
            " · ".join(f"{name} {method}" for name, method in m.methods.items())
            + f" · {html.escape(m.mode)} mode",
        ),
    ]
    cluster_line = describe_cluster(m.cluster, m)
    if cluster_line:
        details.append(("cm-cluster", html.escape(cluster_line)))
    remote_line = describe_remote(m.remote)
    if remote_line:  # beside the local figures, never in them
        rows.insert(2, ("cm-remote", html.escape(remote_line)))
    body = "".join(f"<div class='{cls}'>{content}</div>" for cls, content in rows)
    inner = "".join(f"<div class='{cls}'>{content}</div>" for cls, content in details)
    body += (
        f"<details class='cm-details' style='{_QUIET}'><summary style='cursor: pointer'>"
        f"energy, grid and methods</summary>{inner}</details>"
    )
    return (
        f"<div class='carbon-magic-panel' data-state='{html.escape(state)}' "
        f"style='{_STYLE.format(colour=colour)}'>{body}</div>"
    )


SPARKLINE_POINTS = 120  # the sparkline keeps the latest this many timeline points
_BRAND = "var(--jp-brand-color1, #1976d2)"
_WARN = "var(--jp-warn-color1, #ef6c00)"
_TRACK = "var(--jp-layout-color3, #bdbdbd)"


def window_power(timeline: Any, since_s: float) -> list[tuple[float, float]]:
    """Total power over time since ``since_s`` from a tracker's ``Timeline``:
    ``(end of each span, UTC epoch seconds; mean watts of all components)``."""
    points = timeline.points(since_s)[-SPARKLINE_POINTS:]
    return [(point.end_s, sum(w for _, w in point.watts)) for point in points]


def sparkline_svg(power: Sequence[tuple[float, float]], width: int = 180, height: int = 28) -> str:
    """An inline SVG line of ``power`` (``(seconds, watts)`` pairs, oldest first), scaled
    from 0 W to its peak, with the peak and mean in its title; static, so that a saved
    notebook keeps it. Fewer than two points draw an empty frame."""
    finite = [(t, w) for t, w in power if math.isfinite(t) and math.isfinite(w)]
    # A framed chart (a background and a baseline), not a line that reads as an underline.
    frame = (
        f"<svg class='cm-spark' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}' role='img' style='vertical-align: middle; "
        f"background: var(--jp-layout-color2, #eee); border-radius: 2px'"
    )
    if len(finite) < 2:
        return frame + " aria-label='power over the cell: no samples yet'></svg>"
    t0, t1 = finite[0][0], finite[-1][0]
    span = max(t1 - t0, 1e-9)
    peak = max(max(w for _, w in finite), 1e-9)
    mean = sum(w for _, w in finite) / len(finite)
    coords = " ".join(
        f"{(t - t0) / span * (width - 2) + 1:.1f},{height - 1 - w / peak * (height - 4):.1f}"
        for t, w in finite
    )
    label = (
        f"power over the cell: peak {format_watts(peak)}, mean {format_watts(mean)} "
        f"over {format_duration(t1 - t0)} (tracker samples)"
    )
    return (
        f"{frame} aria-label='{html.escape(label)}'><title>{html.escape(label)}</title>"
        f"<polyline points='{coords}' fill='none' stroke='{_BRAND}' stroke-width='1.5'/>"
        f"<polygon points='1,{height - 1} {coords} {width - 1},{height - 1}' "
        f"fill='{_BRAND}' fill-opacity='0.2' stroke='none'/>"
        f"<line x1='0' x2='{width}' y1='{height - 0.5}' y2='{height - 0.5}' "
        f"stroke='{_TRACK}'/>"
        f"</svg> <span class='cm-spark-peak'>peak {format_watts(peak)}</span>"
    )


def budget_bar_html(fraction: float, width: int = 180) -> str:
    """A progress bar of the budget used (``fraction``: 1.0 is all of it), in the warning
    colour once exceeded; the bar is capped at full width."""
    used = max(0.0, fraction) if math.isfinite(fraction) else 1.0
    exceeded = used > 1.0
    return _bar_html(
        used,
        _WARN if exceeded else _BRAND,
        width,
        f"class='cm-budget-bar' role='progressbar' aria-label='carbon budget used' "
        f"aria-valuetext='{used * 100:.0f}% of the budget' aria-valuemin='0' "
        f"aria-valuemax='100' aria-valuenow='{min(used, 9.99) * 100:.0f}' "
        f"data-exceeded='{str(exceeded).lower()}'",
    )


def _bar_html(used: float, colour: str, width: int, attributes: str) -> str:
    """A thin bar filled to ``used`` (1.0: full; more is capped) in ``colour``."""
    filled = min(used, 1.0) * 100
    return (
        f"<span {attributes} style='display: inline-block; "
        f"width: {width}px; height: 6px; margin-right: 6px; vertical-align: middle; "
        f"background: {_TRACK}; border-radius: 3px; overflow: hidden'>"
        f"<span style='display: block; height: 100%; width: {filled:.1f}%; "
        f"background: {colour}'></span></span>"
    )


CAP_WARN_FRACTION = 0.8  # from this share of a cap spent, its bar is in the warning colour
_CAP_COLOURS = {"ok": _BRAND, "warn": _WARN, "spent": _COLOURS["error"]}


def cap_level(fraction: float) -> str:
    """``ok``, ``warn`` (``CAP_WARN_FRACTION`` of the cap spent) or ``spent`` (all of it,
    or a fraction that is not a number)."""
    if not fraction < 1.0:
        return "spent"
    return "warn" if fraction >= CAP_WARN_FRACTION else "ok"


def caps_html(caps: Sequence[ScopeState], width: int = 60) -> str:
    """The notebook and day caps on one line, a small bar each with its figures, e.g.
    ``day 38 g of 50 g CO₂e · 12 g left``; the bar in the warning colour from 80 % spent
    and the error colour once spent (the words say it too: ``2 g over``)."""
    parts = []
    for cap in caps:
        level = cap_level(cap.fraction)
        grams = cap.budget.grams is not None
        figure = format_grams if grams else format_kwh
        quantity = " CO₂e" if grams else ""
        over = cap.spent - cap.limit
        rest = f"{figure(over)} over" if over > 0 else f"{figure(cap.remaining)} left"
        text = f"{cap.scope} {figure(cap.spent)} of {figure(cap.limit)}{quantity} · {rest}"
        used = cap.fraction if math.isfinite(cap.fraction) else 1.0
        bar = _bar_html(
            max(0.0, used),
            _CAP_COLOURS[level],
            width,
            f"class='cm-cap-bar' role='progressbar' aria-label='{cap.scope} budget spent' "
            f"aria-valuetext='{html.escape(text)} ({used:.0%})' aria-valuemin='0' "
            f"aria-valuemax='100' aria-valuenow='{min(max(used, 0.0), 1.0) * 100:.0f}'",
        )
        parts.append(
            f"<span class='cm-cap' data-scope='{html.escape(cap.scope)}' data-level='{level}' "
            f"style='white-space: nowrap; margin-right: 12px'>{bar}{html.escape(text)}</span>"
        )
    return "".join(parts)


def widgets_available(shell: Any) -> bool:
    """True in a kernel whose frontend can render widgets (not terminal IPython)."""
    if shell is None or getattr(shell, "kernel", None) is None:
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


class Panel:
    """One cell's live panel. ``update`` may be called from any thread."""

    def __init__(self, name: str, use_widgets: bool) -> None:
        self.name = name
        self.use_widgets = use_widgets
        self.display_id = f"carbon-magic-{uuid.uuid4().hex}"
        self._widget: Any = None
        self._lock = threading.Lock()
        self._closed = False
        self.last_html = ""
        self.last_text = ""

    def show(self, initial_html: str) -> None:
        """Display the widget (main thread, at the start of the cell)."""
        if not self.use_widgets:
            return
        from IPython.display import display

        # A prepared widget shows a "starting" line until the tracker thread's first
        # update (it ticks at once): setting its value here would cost this cell a message.
        widget = _take_widget(initial_html)
        self._widget = widget
        # A raw bundle: IPython's formatters would build the widget's long text repr.
        bundle = {
            "application/vnd.jupyter.widget-view+json": {
                "version_major": 2,
                "version_minor": 0,
                "model_id": widget.model_id,
            },
            "text/plain": f"carbon panel: {self.name}",
        }
        _without_stream_flush(lambda: display(bundle, raw=True, display_id=self.display_id))

    def update(self, new_html: str, text: str) -> None:
        """Show new figures (from the tracker thread; never raises into it)."""
        with self._lock:
            if self._closed:
                return
            self.last_html, self.last_text = new_html, text
            widget = self._widget
            if widget is not None:
                with widget.hold_sync():
                    widget.value = new_html

    def finish(self, final_html: str, text: str) -> None:
        """Freeze the final state as plain output (main thread, at the end of the cell)."""
        with self._lock:
            self._closed = True
            self.last_html, self.last_text = final_html, text
            widget, self._widget = self._widget, None
        if widget is None:
            print(text)
            return
        from IPython.display import update_display

        bundle = {"text/html": final_html, "text/plain": text}
        _without_stream_flush(lambda: update_display(bundle, raw=True, display_id=self.display_id))
        widget.close()

    def __repr__(self) -> str:
        return self.last_text or f"<carbon panel {self.name}>"


def text_summary(m: Measurement, note: str | None = None, title: str | None = None) -> str:
    """The one-line summary printed where widgets cannot render."""
    line = "carbon: " + m.summary_line(title)
    cluster_line = describe_cluster(m.cluster, m)
    if cluster_line:
        line += f" ({cluster_line})"
    remote_line = describe_remote(m.remote)
    if remote_line:
        line += f" · {remote_line}"
    return f"{line} · {note}" if note else line


# One widget is created ahead of need, in a background thread, so that a %%carbon cell
# does not wait for a widget's creation (a comm opening, ~1 ms) before it runs.
_spare_lock = threading.Lock()
_spare_widget: Any = None


_STARTING_HTML = (
    "<div class='carbon-magic-panel' data-state='starting' "
    f"style='{_STYLE.format(colour=_COLOURS['running'])}'>⚡ measuring…</div>"
)


def _new_widget(value: str = _STARTING_HTML) -> Any:
    import ipywidgets

    widget = ipywidgets.HTML(value=value)
    widget.add_class("carbon-magic-panel-widget")
    return widget


def _take_widget(initial_html: str) -> Any:
    """The prepared widget if there is one, else a new one showing ``initial_html``."""
    global _spare_widget
    with _spare_lock:
        widget, _spare_widget = _spare_widget, None
    return widget if widget is not None else _new_widget(initial_html)


def prepare_spare_widget() -> None:
    """Create the widget the next panel will use (call from a background thread)."""
    global _spare_widget
    with _spare_lock:
        if _spare_widget is not None:
            return
    try:
        widget = _new_widget()
    except Exception:
        return  # the next cell creates its own
    with _spare_lock:
        if _spare_widget is None:
            _spare_widget = widget
            return
    widget.close()


def _without_stream_flush(publish: Any) -> None:
    """Run ``publish`` (a display call) without ipykernel's stream flush before it.

    The flush waits for a round trip through the kernel's IO thread (about a millisecond
    each time) and orders nothing here: the panel is displayed before the cell prints
    anything, and later replaced in place.
    """
    try:
        from IPython import get_ipython

        publisher = get_ipython().display_pub
        publisher._flush_streams = _no_flush
    except Exception:
        publisher = None
    try:
        publish()
    finally:
        if publisher is not None:
            try:
                del publisher._flush_streams
            except AttributeError:
                pass


def _no_flush() -> None:
    pass
