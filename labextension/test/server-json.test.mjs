/**
 * The TypeScript interface of the cells JSON against what the server really returns:
 * tests/test_server_cells.py writes a real answer of a real Jupyter Server to
 * build/api-fixtures/cells.json; every field must be declared, with its type.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const schema = require('../../build/ts-unit/schema.js');
const FIXTURE = fileURLToPath(
  new URL('../../build/api-fixtures/cells.json', import.meta.url)
);

test("the server's cells page matches ICellsPage exactly", () => {
  assert.ok(
    existsSync(FIXTURE),
    `${FIXTURE} is missing: run pytest tests/test_server_cells.py first`
  );
  const page = JSON.parse(readFileSync(FIXTURE, 'utf8'));
  assert.ok(page.cells.length >= 2, 'the fixture has cells');
  schema.checkCellsPage(page, true);
});
