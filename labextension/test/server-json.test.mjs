/**
 * The TypeScript interfaces of the kernel and cells JSON against what the server
 * really returns: tests/test_server_kernel.py, tests/test_server_cells.py and
 * tests/test_server.py write real answers of a real Jupyter Server to
 * build/api-fixtures/kernel.json, cells.json and summary.json; every field must be
 * declared, with its type.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const schema = require('../../build/ts-unit/schema.js');

/** The fixture `name` written by the Python test `writer`. */
function fixture(name, writer) {
  const path = fileURLToPath(
    new URL(`../../build/api-fixtures/${name}`, import.meta.url)
  );
  assert.ok(existsSync(path), `${path} is missing: run pytest ${writer} first`);
  return JSON.parse(readFileSync(path, 'utf8'));
}

test("the server's kernel document matches IKernelFigures exactly", () => {
  const kernel = fixture('kernel.json', 'tests/test_server_kernel.py');
  // The fixture has every nullable part filled in, so each is checked.
  assert.notEqual(kernel.heartbeat, null, 'the fixture has a heartbeat');
  assert.notEqual(kernel.prediction, null, 'the fixture has a prediction');
  assert.ok(Object.keys(kernel.session.gpus).length >= 2, 'it has GPUs');
  assert.equal(schema.checkKernelFigures(kernel, true), kernel);
});

test("the server's cells page matches ICellsPage exactly", () => {
  const page = fixture('cells.json', 'tests/test_server_cells.py');
  assert.ok(page.cells.length >= 2, 'the fixture has cells');
  schema.checkCellsPage(page, true);
});

test("the server's summary matches ISummary exactly", () => {
  const summary = fixture(
    'summary.json',
    'tests/test_server.py::test_summary_lists_the_servers_kernels'
  );
  const tracked = summary.kernels.filter(kernel => kernel.tracked);
  assert.ok(tracked.length >= 2, 'the fixture has tracked kernels');
  assert.ok(tracked.length < summary.kernels.length, 'and an untracked one');
  assert.equal(schema.checkSummary(summary, true), summary);
  const [first] = tracked;
  assert.throws(
    () =>
      schema.checkSummary({
        ...summary,
        kernels: [{ ...first, sessions: '2' }]
      }),
    /summary\.kernels\[0\]\.sessions: expected a finite number/
  );
  assert.throws(
    () => schema.checkSummary({ ...summary, scope: 'cluster' }),
    /summary\.scope: expected one of server, ledger/
  );
});
