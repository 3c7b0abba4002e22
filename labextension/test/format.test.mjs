/**
 * Unit tests of the pure modules (formatting, footers' texts, the JSON checks),
 * compiled by `jlpm test` to ../build/ts-unit and run with node's test runner.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';

const require = createRequire(import.meta.url);
const format = require('../../build/ts-unit/format.js');
const cells = require('../../build/ts-unit/cellformat.js');
const schema = require('../../build/ts-unit/schema.js');

/** `text` with a no-break space between each number and its unit, as shown. */
const nb = text =>
  text.replace(
    /(\d|<) (?=(ms|s|min|h|µg|mg|g|kg|t|mW|W|kW|mWh|Wh|kWh|MWh|cm|m|km|0\.01)(\b|\s|$|\)|–))/g,
    '$1\u00a0'
  );

/** A cell record as the server sends it (see tests/test_server_cells.py). */
function record(overrides = {}) {
  return {
    id: 7,
    cell_id: 'c-1',
    kernel_id: 'k',
    session_uuid: 's',
    execution_count: 3,
    name: null,
    source: 'df.groupby("k").sum()',
    via: 'auto',
    status: 'ok',
    started_at: 1000,
    ended_at: 1012.1,
    duration_s: 12.1,
    energy_j: { cpu: 30, gpu: 0, ram: 6 },
    power_w: { cpu: 2.48, gpu: 0, ram: 0.5, total: 2.98 },
    energy_kwh: 0.000011,
    energy_range_kwh: [0.0000088, 0.0000143],
    emissions_g: 0.0042,
    emissions_range_g: [0.0029, 0.0059],
    embodied_g: 0.00042,
    intensity: { g_per_kwh: 382.4, source: 'static: DE (2023)' },
    pue: 1.1,
    mode: 'process',
    methods: { cpu: 'modelled', gpu: 'measured', ram: 'assumed' },
    budget: null,
    remote: null,
    totals_include_remote: false,
    ...overrides
  };
}

test('durations', () => {
  assert.equal(format.formatDuration(0.45), nb('450 ms'));
  assert.equal(format.formatDuration(12.1), nb('12.1 s'));
  assert.equal(format.formatDuration(12.149), nb('12.1 s'));
  assert.equal(format.formatDuration(59.99), nb('60 s'));
  assert.equal(format.formatDuration(125), nb('2 min 5 s'));
  assert.equal(format.formatDuration(3780), nb('1 h 3 min'));
  assert.equal(format.formatDuration(-1), '—');
});

test('percentages are clamped', () => {
  assert.equal(format.formatPercent(0.424), '42%');
  assert.equal(format.formatPercent(1.3), '100%');
  assert.equal(format.formatPercent(-0.1), '0%');
  assert.equal(format.formatPercent(NaN), '—');
});

test('the footer line leads with emissions or energy', () => {
  assert.equal(
    cells.footerText(record()),
    nb('⚡ 4.2 mg CO₂e · 11 mWh · 12.1 s')
  );
  assert.equal(
    cells.footerText(record(), 'energy'),
    nb('⚡ 11 mWh · 4.2 mg CO₂e · 12.1 s')
  );
  assert.equal(
    cells.footerText(record({ status: 'error' })),
    nb('⚡ 4.2 mg CO₂e · 11 mWh · 12.1 s · error')
  );
});

test('the footer tooltip says how the figures were obtained', () => {
  const title = cells.footerTitle(record(), 1012.1 + 75);
  assert.match(title, /Emissions ≈ 4\.2\smg \(2\.9\smg–5\.9\smg\) CO₂e/);
  assert.match(
    title,
    /Energy 11\smWh \(8\.8\smWh–14\smWh\), facility, PUE 1\.1/
  );
  assert.match(
    title,
    /CPU 2\.5\sW modelled · GPU 0\smW measured · RAM 500\smW assumed/
  );
  assert.match(title, /Grid 382 g\/kWh · static: DE \(2023\)/);
  // 0.42 mg of 4.2 + 0.42 mg: 9%.
  assert.match(
    title,
    /Embodied 0\.42\smg CO₂e \(manufacturing, amortised; 9% of/
  );
  assert.match(title, /ended 1\smin 15\ss ago/);
});

test('the footer tooltip shows LLM calls apart, as estimated', () => {
  assert.doesNotMatch(cells.footerTitle(record(), 1100), /Remote/);
  const remote = {
    count: 3,
    estimated: 2,
    unestimated: 1,
    energy_kwh: 0.0012,
    energy_range_kwh: [0.001, 0.0014],
    emissions_g: 0.5,
    emissions_range_g: [0.4, 0.6],
    embodied_g: 0.05,
    water_l: 0.004,
    water_range_l: [0.003, 0.005],
    method: 'estimated (EcoLogits 0.11)'
  };
  assert.match(
    cells.footerTitle(record({ remote }), 1100),
    /Remote \(estimated, not included above\): 3 LLM calls · 1\.2\sWh · ≈ 500\smg \(400\smg–600\smg\) CO₂e · 1 without estimate/
  );
});

test('footers hide below the threshold and when switched off', () => {
  const settings = { ...cells.DEFAULT_FOOTER_SETTINGS };
  assert.equal(cells.showsFooter(record(), settings), true);
  assert.equal(
    cells.showsFooter(record(), { ...settings, footerMinEmissionsG: 0.005 }),
    false
  );
  assert.equal(
    cells.showsFooter(record(), { ...settings, footerMinEmissionsG: 0.004 }),
    true
  );
  assert.equal(
    cells.showsFooter(record(), { ...settings, footers: false }),
    false
  );
});

test('a prediction reads as fraction, final emissions and time left', () => {
  const prediction = {
    fraction: 0.42,
    emissions_g: 3.1,
    emissions_range_g: [2.5, 4],
    eta_s: 65
  };
  assert.deepEqual(schema.readPrediction(prediction), prediction);
  assert.equal(
    cells.predictionText(prediction),
    nb('≈ 42% · ≈ 3.1 g (2.5 g–4 g) CO₂e at the end · 1 min 5 s left')
  );
  assert.equal(schema.readPrediction(null), null);
  assert.equal(schema.readPrediction(undefined), null);
  assert.equal(schema.readPrediction({ fraction: 'half' }), null);
});

test('cells pages are checked field by field', () => {
  const page = {
    kernel_id: null,
    notebook_path: 'nb.ipynb',
    now: 2000,
    after: 0,
    limit: 200,
    last_id: 7,
    more: false,
    cells: [record()]
  };
  assert.equal(schema.checkCellsPage(page, true), page);
  assert.throws(
    () =>
      schema.checkCellsPage({ ...page, cells: [record({ emissions_g: '1' })] }),
    /cells page\.cells\[0\]\.emissions_g: expected a finite number/
  );
  const { duration_s, ...withoutDuration } = record();
  assert.equal(typeof duration_s, 'number');
  assert.throws(
    () => schema.checkCellsPage({ ...page, cells: [withoutDuration] }),
    /cells\[0\]\.duration_s: missing/
  );
  assert.throws(
    () =>
      schema.checkCellsPage({ ...page, cells: [record({ extra: 1 })] }, true),
    /fields not in the interface: extra/
  );
  // Not strict (as in the extension): fields added later by the server are fine.
  assert.equal(schema.checkCellsPage({ ...page, extra: 1 }).last_id, 7);
});
