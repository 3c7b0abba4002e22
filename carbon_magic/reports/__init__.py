"""Reports over recorded cells: tables, plots, exports, model cards."""
