/**
 * The Carbon sidebar's carbon-aware hint (src/hint.ts), compiled by `jlpm test` to
 * ../build/ts-unit.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';

const require = createRequire(import.meta.url);
const { hintView, MAX_HINT_CHARS } = require('../../build/ts-unit/hint.js');

const TEXT =
  'grid now 320 g/kWh; lowest in the next 24 h ≈ 120 g/kWh at 14:00 (−62 %)';

test('a live kernel shows its hint as sent, labelled for screen readers', () => {
  const view = hintView({ live: true, hint: { text: TEXT } });
  assert.equal(view.text, TEXT);
  assert.equal(view.label, `Carbon-aware hint: ${TEXT}`);
  assert.ok(view.title.startsWith(`${TEXT}\n`));
});

test('no hint without one, blank, malformed, or when the kernel is not live', () => {
  assert.equal(hintView({ live: true }), null);
  assert.equal(hintView({ live: true, hint: null }), null);
  assert.equal(hintView({ live: true, hint: { text: ' \n ' } }), null);
  assert.equal(hintView({ live: true, hint: { text: 42 } }), null);
  assert.equal(hintView({ live: false, hint: { text: TEXT } }), null);
});

test('markup stays text and whitespace is folded', () => {
  const view = hintView({
    live: true,
    hint: { text: '  <b>grid</b>\n  now <img src=x onerror=alert(1)>  ' }
  });
  assert.equal(view.text, '<b>grid</b> now <img src=x onerror=alert(1)>');
});

test('a long hint is cut with an ellipsis, the tooltip and label keep it all', () => {
  const long = 'cleaner later; '.repeat(30).trim();
  const view = hintView({ live: true, hint: { text: long } });
  assert.equal(view.text.length, MAX_HINT_CHARS);
  assert.ok(view.text.endsWith('…'));
  assert.ok(long.startsWith(view.text.slice(0, -1)));
  assert.ok(view.label.endsWith(long) && view.title.startsWith(long));
});
