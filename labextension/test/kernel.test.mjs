/**
 * The kernel document's check, the status model's handling of a malformed one, and
 * the popup's GPU text (see tests/test_server_kernel.py for the server's side),
 * compiled by `jlpm test` to ../build/ts-unit.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';

const require = createRequire(import.meta.url);
const schema = require('../../build/ts-unit/schema.js');
const gpus = require('../../build/ts-unit/gpus.js');
const { CarbonModel } = require('../../build/ts-unit/model.js');
const { ServerConnection } = require('@jupyterlab/services');

const H200 = { vendor: 'nvidia', model: 'NVIDIA H200' };

/** A kernel document as the server sends it, with `session` fields overridden. */
function kernel(overrides = {}, session = {}) {
  return {
    kernel_id: 'k',
    notebook_path: 'nb.ipynb',
    now: 2000,
    tracker_state: 'running',
    live: true,
    stale: false,
    age_s: 1,
    stale_after_s: 10,
    power_w: { cpu: 30, gpu: 212, ram: 2, total: 244 },
    totals: {
      energy_kwh: 0.002,
      emissions_g: 0.1,
      emissions_low_g: 0.07,
      emissions_high_g: 0.14,
      embodied_g: 0.01,
      source: 'heartbeat',
      n_cells: 3
    },
    intensity: { g_per_kwh: 56, source: 'static: FR (2023)' },
    prediction: null,
    hint: null,
    heartbeat: {
      at: 1999,
      running_cell: null,
      running_cell_started_at: null,
      ledger_bytes: 4096
    },
    session: {
      session_uuid: 's',
      host: 'h',
      pid: 42,
      started_at: 1000,
      ended_at: null,
      interval_s: 1,
      mode: 'process',
      methods: { cpu: 'modelled', gpu: 'measured' },
      gpus: { 'nvidia:0': H200 },
      ...session
    },
    budgets: [],
    remote: null,
    totals_include_remote: false,
    ...overrides
  };
}

test('kernel documents are checked field by field, nested ones too', () => {
  const good = kernel();
  assert.equal(schema.checkKernelFigures(good, true), good);
  const lost = kernel({ tracker_state: 'lost', heartbeat: null });
  assert.equal(schema.checkKernelFigures(lost, true).tracker_state, 'lost');
  assert.throws(
    () => schema.checkKernelFigures(kernel({ tracker_state: 'gone' })),
    /kernel\.tracker_state: expected one of running, stopped, lost/
  );
  assert.throws(
    () => schema.checkKernelFigures(kernel({}, { pid: '42' })),
    /kernel\.session\.pid: expected a finite number/
  );
  assert.throws(
    () =>
      schema.checkKernelFigures(
        kernel({}, { gpus: { 'nvidia:0': { vendor: 'nvidia' } } })
      ),
    /kernel\.session\.gpus\.nvidia:0\.model: missing/
  );
  assert.throws(
    () => schema.checkKernelFigures(kernel({ prediction: { fraction: 1 } })),
    /kernel\.prediction\.emissions_g: missing/
  );
  assert.throws(
    () =>
      schema.checkKernelFigures(
        kernel({ heartbeat: { at: 1, running_cell: 3 } })
      ),
    /kernel\.heartbeat\.running_cell: expected a string/
  );
  const { session, ...withoutSession } = kernel();
  assert.equal(typeof session, 'object');
  assert.throws(
    () => schema.checkKernelFigures(withoutSession),
    /kernel\.session: missing/
  );
  assert.throws(
    () => schema.checkKernelFigures(kernel({}, { gpu_count: 1 }), true),
    /kernel\.session: fields not in the interface: gpu_count/
  );
  // Not strict (as in the extension): fields added later by the server are fine.
  assert.equal(
    schema.checkKernelFigures(kernel({}, { gpu_count: 1 })).kernel_id,
    'k'
  );
});

test("the popup's GPU row gives watts, method and the GPUs", () => {
  assert.equal(
    gpus.gpuRowText(
      kernel({}, { gpus: { 'nvidia:0': H200, 'nvidia:1': H200 } })
    ),
    '210\u00a0W (measured) · NVIDIA H200 ×2'
  );
  assert.equal(
    gpus.gpuRowText(kernel({}, { methods: {}, gpus: { 'nvidia:0': H200 } })),
    '210\u00a0W · NVIDIA H200'
  );
  assert.equal(
    gpus.gpuRowText(kernel({}, { gpus: {} })),
    '210\u00a0W (measured)'
  );
  assert.equal(gpus.gpuRowText(kernel({}, { methods: {}, gpus: {} })), null);
});

test('GPUs read as vendor and model, counted', () => {
  assert.equal(gpus.gpusText({}), '');
  assert.equal(gpus.gpusText({ 'nvidia:0': H200 }), 'NVIDIA H200');
  assert.equal(
    gpus.gpusText({
      'nvidia:1': H200,
      'amd:0': { vendor: 'amd', model: 'AMD Instinct MI300X' },
      'nvidia:0': H200
    }),
    'AMD Instinct MI300X · NVIDIA H200 ×2'
  );
  // Older ledgers' names lack the vendor; unknown vendors are shown as sent.
  assert.equal(
    gpus.gpusText({ gpu0: { vendor: 'nvidia', model: 'Tesla T4' } }),
    'NVIDIA Tesla T4'
  );
  assert.equal(
    gpus.gpusText({ 'apple:gpu': { vendor: 'apple', model: 'Apple M3 Max' } }),
    'Apple M3 Max'
  );
  assert.equal(
    gpus.gpusText({ 'intel:0': { vendor: 'intel', model: 'Arc A770' } }),
    'intel Arc A770'
  );
  // Text as sent: the popup sets it as textContent, never as HTML.
  assert.equal(
    gpus.gpusText({ 'amd:0': { vendor: 'amd', model: '<b>x</b>' } }),
    'AMD <b>x</b>'
  );
});

/** A status model with a fake server that answers kernel requests with `server.body`. */
function modelOf(server) {
  const fetch = async () => {
    server.requests += 1;
    return new Response(JSON.stringify(server.body), {
      status: 200,
      headers: { 'Content-Type': 'application/json' }
    });
  };
  return new CarbonModel(
    ServerConnection.makeSettings({ baseUrl: 'http://localhost:1/', fetch })
  );
}

/** Wait (up to 2 s) until `done()` holds. */
async function until(done) {
  for (let waited = 0; !done() && waited < 2000; waited += 5) {
    await new Promise(resolve => setTimeout(resolve, 5));
  }
}

test('a malformed kernel answer is logged once and shows nothing', async t => {
  const warnings = [];
  t.mock.method(console, 'warn', (...args) => warnings.push(args));
  const server = { body: kernel(), requests: 0 };
  const model = modelOf(server);
  try {
    model.setTarget(true, 'k');
    await until(() => model.status.kind === 'figures');
    assert.equal(model.status.kind, 'figures');

    server.body = kernel({}, { pid: 'x' });
    await model.refresh();
    await until(() => model.status.kind === 'idle');
    assert.equal(model.status.kind, 'idle');
    const asked = server.requests;
    await model.refresh();
    await until(() => server.requests > asked);
    await new Promise(resolve => setTimeout(resolve, 20));
    assert.equal(model.status.kind, 'idle');
    assert.equal(warnings.length, 1, 'logged once');
    assert.match(String(warnings[0][1]), /kernel\.session\.pid/);

    server.body = kernel();
    await model.refresh();
    await until(() => model.status.kind === 'figures');
    assert.equal(model.status.kind, 'figures');
  } finally {
    model.dispose();
  }
});

test('kernel activity fetches again one sampling interval later, once', async () => {
  const server = { body: kernel({}, { interval_s: 0.2 }), requests: 0 };
  const model = modelOf(server);
  try {
    model.setTarget(true, 'k');
    await until(() => model.status.kind === 'figures');
    await new Promise(resolve => setTimeout(resolve, 50));
    const asked = server.requests;
    // busy, then idle 20 ms later: one follow-up, 0.2 s + margin after the last call,
    // and its answer shows the idle kernel: no more.
    model.kernelActivityChanged('busy');
    await new Promise(resolve => setTimeout(resolve, 20));
    model.kernelActivityChanged('idle');
    const called = Date.now();
    await until(() => server.requests > asked);
    const waited = Date.now() - called;
    assert.equal(server.requests, asked + 1);
    assert.ok(waited >= 400 && waited < 1500, `followed up after ${waited} ms`);
    await new Promise(resolve => setTimeout(resolve, 600));
    assert.equal(server.requests, asked + 1, 'no second follow-up');
  } finally {
    model.dispose();
  }
});

test('a follow-up that still shows the cell running asks again shortly, until it ends', async () => {
  const running = kernel(
    {
      heartbeat: {
        at: 1999,
        running_cell: 'fit()',
        running_cell_started_at: 1990,
        ledger_bytes: null
      }
    },
    { interval_s: 0.2 }
  );
  const server = { body: running, requests: 0 };
  const model = modelOf(server);
  try {
    model.setTarget(true, 'k');
    await until(() => model.live?.running);
    await new Promise(resolve => setTimeout(resolve, 50));
    // The cell ended, but the kernel's beat about it comes late: the follow-up still
    // sees it running and asks again a quarter second later, not at the next poll.
    model.kernelActivityChanged('idle');
    const asked = server.requests;
    await until(() => server.requests > asked);
    const followedUp = Date.now();
    assert.equal(model.live.running, true);
    server.body = kernel({}, { interval_s: 0.2 });
    await until(() => model.live && !model.live.running);
    const retriedAfter = Date.now() - followedUp;
    assert.ok(retriedAfter < 450, `asked again after ${retriedAfter} ms`);
    const settled = server.requests;
    await new Promise(resolve => setTimeout(resolve, 700));
    assert.equal(
      server.requests,
      settled,
      'no more follow-ups once idle shows'
    );
  } finally {
    model.dispose();
  }
});

test('while a cell runs every surface reads one snapshot, and the clock moves it on', async () => {
  const prediction = {
    fraction: 0.5,
    emissions_g: 1,
    emissions_range_g: [0.5, 2],
    eta_s: 30
  };
  // Sampling every 5 s: the page asks every 2 s (its refresh rate), the clock ticks
  // every second in between.
  const running = kernel(
    {
      prediction,
      heartbeat: {
        at: 1999,
        running_cell: 'fit()',
        running_cell_started_at: 1990,
        ledger_bytes: null
      }
    },
    { interval_s: 5 }
  );
  const server = { body: running, requests: 0 };
  const model = modelOf(server);
  try {
    model.setTarget(true, 'k');
    await until(() => model.live?.running);
    const first = model.live;
    assert.ok(first.prediction.eta_s <= 29 && first.prediction.eta_s > 28);
    // Between signals the snapshot stays the same object: no surface sees another.
    await new Promise(resolve => setTimeout(resolve, 50));
    assert.equal(model.live, first);
    // The clock ticks each second while a cell runs: the time left counts down.
    let ticked = 0;
    model.clock.connect(() => (ticked += 1));
    await new Promise(resolve => setTimeout(resolve, 1_150));
    assert.ok(ticked >= 1, 'the clock ticked');
    assert.ok(model.live.prediction.eta_s < first.prediction.eta_s);
    // No cell running: the clock stops.
    server.body = kernel();
    await model.refresh();
    await until(() => model.live && !model.live.running);
    const stopped = ticked;
    await new Promise(resolve => setTimeout(resolve, 1_150));
    assert.equal(ticked, stopped, 'no clock while idle');
  } finally {
    model.dispose();
  }
});
