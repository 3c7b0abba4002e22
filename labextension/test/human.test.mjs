/**
 * Unit tests of the human-scale rules: one unit per view, a floor instead of
 * µ-units, number and unit never split, footers hidden for trivial cells, live
 * figures carried forward between answers, and everyday comparisons.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';

const require = createRequire(import.meta.url);
const format = require('../../build/ts-unit/format.js');
const cells = require('../../build/ts-unit/cellformat.js');
const live = require('../../build/ts-unit/live.js');
const comparison = require('../../build/ts-unit/comparison.js');
const timeline = require('../../build/ts-unit/timeline.js');

const NBSP = '\u00a0';
// A number, then an ordinary (breakable) space, then a unit: what must never appear.
const SPLIT = /[\d<] (ms|s|min|h|mg|g|kg|t|mW|W|kW|mWh|Wh|kWh|MWh|cm|m|km)\b/;

function record(grams, kwh, seconds = 12, source = 'fit(model)') {
  return {
    id: 1,
    cell_id: 'c',
    kernel_id: 'k',
    session_uuid: 's',
    execution_count: 1,
    name: null,
    source,
    via: 'auto',
    status: 'ok',
    started_at: 1000,
    ended_at: 1000 + seconds,
    duration_s: seconds,
    energy_j: { cpu: 1, gpu: 0, ram: 0 },
    power_w: { cpu: 1, gpu: 0, ram: 0, total: 1 },
    energy_kwh: kwh,
    energy_range_kwh: [kwh * 0.8, kwh * 1.2],
    emissions_g: grams,
    emissions_range_g: [grams * 0.7, grams * 1.4],
    embodied_g: grams / 10,
    intensity: { g_per_kwh: 380, source: 'static: DE (2023)' },
    pue: 1.1,
    mode: 'process',
    methods: { cpu: 'modelled' },
    budget: null
  };
}

test('number and unit are joined by a no-break space', () => {
  for (const text of [
    format.formatGrams(0.0042),
    format.formatGrams(1234),
    format.formatKwh(0.000011),
    format.formatWatts(0.5),
    format.formatDuration(0.45),
    format.formatDuration(125),
    format.formatDuration(7300),
    format.formatAge(3),
    format.formatGramsRange(0.0042, 0.0029, 0.0059),
    format.formatGrams(1e-9),
    cells.footerText(record(0.0042, 0.000011)),
    cells.predictionText({
      fraction: 0.4,
      emissions_g: 3.1,
      emissions_range_g: [2.5, 4],
      eta_s: 65
    })
  ]) {
    assert.doesNotMatch(text, SPLIT, text);
  }
  assert.equal(format.formatGrams(2.13), `2.1${NBSP}g`);
  assert.equal(format.formatWatts(38.2), `38${NBSP}W`);
});

test('below the smallest unit a figure reads as a floor, never in µ-units', () => {
  assert.equal(format.formatGrams(6.2e-9), `<${NBSP}0.01${NBSP}mg`);
  assert.equal(format.formatGrams(0.0000042), `<${NBSP}0.01${NBSP}mg`);
  assert.equal(format.formatGrams(0.000042), `0.04${NBSP}mg`);
  assert.equal(format.formatGrams(0.00042), `0.42${NBSP}mg`);
  assert.equal(format.formatKwh(1.6e-11), `<${NBSP}0.01${NBSP}mWh`);
  assert.equal(format.formatGrams(0), `0${NBSP}mg`);
  assert.equal(format.formatGramsRange(0, 0, 0), `0${NBSP}mg`);
  for (const value of [1e-12, 1e-9, 1e-6]) {
    assert.doesNotMatch(format.formatGrams(value), /µ/);
    assert.doesNotMatch(format.formatKwh(value), /µ/);
  }
});

test('one unit per view, chosen for its largest value', () => {
  const view = [record(0.0000062, 1.6e-11, 0.001), record(2.4, 0.0063)];
  const units = cells.cellUnits(view);
  assert.deepEqual(units.grams, [1, 'g']);
  assert.deepEqual(units.kwh, [1e-3, 'Wh']);
  const lines = view.map(r => cells.footerText(r, 'emissions', units));
  assert.match(
    lines[0],
    /^⚡ <\u00a00\.01\u00a0g CO₂e · <\u00a00\.01\u00a0Wh · /
  );
  assert.match(lines[1], /^⚡ 2\.4\u00a0g CO₂e · 6\.3\u00a0Wh · /);
  // A view of small cells keeps the small unit.
  const small = cells.cellUnits([
    record(0.0042, 0.000011),
    record(0.012, 0.00003)
  ]);
  assert.deepEqual(small.grams, [1e-3, 'mg']);
  assert.equal(
    cells.footerText(record(0.0042, 0.000011), 'emissions', small),
    `⚡ 4.2${NBSP}mg CO₂e · 11${NBSP}mWh · 12${NBSP}s`
  );
  // A range shares one unit: that of its high end.
  assert.equal(
    format.formatGramsRange(0.8, 0.5, 1.2),
    `≈ 0.8${NBSP}g (0.5${NBSP}g–1.2${NBSP}g)`
  );
  assert.deepEqual(format.unitFor(format.GRAMS, []), [1e-3, 'mg']);
});

test('trivial cells and magic-only cells get no footer by default', () => {
  const settings = cells.DEFAULT_FOOTER_SETTINGS;
  assert.equal(settings.footerMinSeconds, 1);
  assert.equal(settings.footerHideMagics, true);
  assert.equal(cells.showsFooter(record(0.004, 1e-5, 12), settings), true);
  assert.equal(cells.showsFooter(record(0.004, 1e-5, 0.001), settings), false);
  assert.equal(
    cells.showsFooter(record(0.004, 1e-5, 0.001), {
      ...settings,
      footerMinSeconds: 0
    }),
    true
  );
  const magic = record(0.004, 1e-5, 3, '%load_ext carbon_magic');
  assert.equal(cells.showsFooter(magic, settings), false);
  assert.equal(
    cells.showsFooter(magic, { ...settings, footerHideMagics: false }),
    true
  );
  // The notebook's source decides where given.
  assert.equal(
    cells.showsFooter(record(0.004, 1e-5, 3), settings, '%carbon report\n'),
    false
  );
  assert.equal(
    cells.isPureMagic(
      '# set up\n%load_ext carbon_magic\n\n%carbon config country=DE'
    ),
    true
  );
  assert.equal(cells.isPureMagic('%%carbon\nfit()'), false);
  assert.equal(cells.isPureMagic('%time fit()\nx = 1'), false);
  assert.equal(cells.isPureMagic(''), false);
});

function figures(overrides = {}) {
  return {
    kernel_id: 'k',
    notebook_path: 'nb.ipynb',
    now: 1010,
    tracker_state: 'running',
    live: true,
    stale: false,
    age_s: 0.5,
    stale_after_s: 5,
    power_w: { cpu: 2, gpu: 0, ram: 0.5, total: 2.5 },
    totals: {
      energy_kwh: 1e-5,
      emissions_g: 0.004,
      emissions_low_g: 0.003,
      emissions_high_g: 0.005,
      embodied_g: 0.0004,
      source: 'heartbeat',
      n_cells: 2
    },
    intensity: { g_per_kwh: 380, source: 'static' },
    prediction: {
      fraction: 0.4,
      emissions_g: 3,
      emissions_range_g: [2, 4],
      eta_s: 6
    },
    hint: null,
    heartbeat: {
      at: 1009.5,
      running_cell: 'fit()',
      running_cell_started_at: 1006
    },
    session: {},
    ...overrides
  };
}

test('the time left counts down and progress moves on between answers', () => {
  const now = live.liveFigures(figures(), 0);
  assert.equal(now.running, true);
  assert.equal(now.ageS, 0.5);
  assert.equal(now.runningForS, 4);
  assert.equal(now.prediction.eta_s, 5.5);
  const later = live.liveFigures(figures(), 2);
  assert.equal(later.ageS, 2.5);
  assert.equal(later.runningForS, 6);
  assert.equal(later.prediction.eta_s, 3.5);
  assert.ok(later.prediction.fraction > now.prediction.fraction);
  // Past its time the prediction waits at 0 s left, short of 100%.
  const over = live.liveFigures(figures(), 60);
  assert.equal(over.prediction.eta_s, 0);
  assert.equal(over.prediction.fraction, 0.99);
  // Nothing running: no prediction and no running time, whatever the JSON holds.
  const idle = live.liveFigures(
    figures({
      heartbeat: {
        at: 1009.5,
        running_cell: null,
        running_cell_started_at: null
      }
    }),
    1
  );
  assert.equal(idle.running, false);
  assert.equal(idle.prediction, null);
  assert.equal(idle.runningForS, null);
});

test("the running cell's footer shows this run, with the kernel's live figures", () => {
  assert.equal(cells.runningText(3.2, null), `⚡ running · 3.2${NBSP}s`);
  const text = cells.runningText(4, live.liveFigures(figures(), 1));
  assert.match(text, /^⚡ running · 4\u00a0s · 2\.5\u00a0W now · ≈ 5\d% · /);
  assert.match(text, /4\.5\u00a0s left$/);
});

test('an everyday comparison at notebook scale, with its source', () => {
  const metres = grams => grams / comparison.CAR_G_PER_M;
  assert.equal(comparison.everydayComparison(0), null);
  assert.equal(comparison.everydayComparison(1e-6), null);
  assert.equal(
    comparison.everydayComparison(0.0016).text,
    `≈ 6.4${NBSP}mm by car`
  );
  assert.equal(
    comparison.everydayComparison(3).text,
    `≈ ${format.significant(metres(3))}${NBSP}m by car`
  );
  assert.equal(comparison.everydayComparison(3).text, `≈ 12${NBSP}m by car`);
  assert.equal(comparison.everydayComparison(0.1).text, `≈ 40${NBSP}cm by car`);
  assert.equal(comparison.everydayComparison(500).text, `≈ 2${NBSP}km by car`);
  assert.match(comparison.everydayComparison(3).source, /EPA/);
});

test('the live line breaks where the kernel was silent', () => {
  const at = [0, 1, 2, 40, 41, 70];
  const runs = timeline.sampleRuns(
    at.map(t => ({ at: t, watts: 1 })),
    3
  );
  assert.deepEqual(
    runs.map(run => run.map(s => s.at)),
    [[0, 1, 2], [40, 41], [70]]
  );
  assert.deepEqual(timeline.sampleRuns([], 3), []);
});
