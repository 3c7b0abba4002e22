/**
 * The notebook and day caps as the status item, its popup and the sidebar word them
 * (src/caps.ts), compiled by `jlpm test` to ../build/ts-unit.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';

const require = createRequire(import.meta.url);
const caps = require('../../build/ts-unit/caps.js');

const NBSP = '\u00a0';
/** `text` as shown: a no-break space between each number and its unit. */
const nb = text =>
  text.replace(/(\d|<) (?=(mg|g|kg|t|mWh|Wh|kWh)\b)/g, `$1${NBSP}`);

/** A cap as the server sends it (`ScopeState.as_json`). */
function cap(scope, limit, spent, unit = 'g', onExceed = 'warn') {
  return {
    scope,
    budget: unit === 'g' ? `${limit}g` : `${limit}kWh`,
    limit,
    spent,
    remaining: Math.max(0, limit - spent),
    fraction: spent / limit,
    unit,
    on_exceed: onExceed
  };
}

test('the level turns to warn at 80 % spent and to spent at 100 %', () => {
  assert.equal(caps.capLevel(0), 'ok');
  assert.equal(caps.capLevel(0.79), 'ok');
  assert.equal(caps.capLevel(0.8), 'warn');
  assert.equal(caps.capLevel(0.999), 'warn');
  assert.equal(caps.capLevel(1), 'spent');
  assert.equal(caps.capLevel(1.4), 'spent');
  // A fraction that says nothing (a zero limit) leaves nothing to spend.
  assert.equal(caps.capLevel(Infinity), 'spent');
  assert.equal(caps.capLevel(NaN), 'spent');
});

test('what is left today, at each level', () => {
  assert.deepEqual(caps.dayLeft(cap('day', 50, 38)), {
    text: nb('12 g left today'),
    level: 'ok',
    label: nb('Day budget: 38 g CO₂e spent of 50 g CO₂e (76%), 12 g CO₂e left.')
  });
  const near = caps.dayLeft(cap('day', 50, 45.5));
  assert.equal(near.text, nb('4.5 g left today'));
  assert.equal(near.level, 'warn');
  assert.equal(
    near.label,
    nb(
      'Day budget: 46 g CO₂e spent of 50 g CO₂e (91%), 4.5 g CO₂e left, near the cap.'
    )
  );
  // Each figure on its own scale: grams left of a kilogram cap read in grams.
  assert.equal(caps.dayLeft(cap('day', 2000, 1995)).text, nb('5 g left today'));
  assert.equal(
    caps.capFigures(cap('day', 2000, 3)),
    nb('3 g of 2 kg CO₂e · 2 kg left')
  );
  const over = caps.dayLeft(cap('day', 50, 52, 'g', 'stop'));
  assert.equal(over.text, 'no budget left today');
  assert.equal(over.level, 'spent');
  assert.equal(
    over.label,
    nb(
      'Day budget: 52 g CO₂e spent of 50 g CO₂e (104%), spent: cells that spend more are stopped.'
    )
  );
});

test('an energy cap reads in energy, without CO₂e', () => {
  const energy = cap('day', 0.2, 0.05, 'kWh');
  assert.equal(caps.dayLeft(energy).text, nb('150 Wh left today'));
  assert.equal(caps.capFigures(energy), nb('50 Wh of 200 Wh · 150 Wh left'));
  assert.doesNotMatch(caps.capSentence(energy), /CO₂e/);
});

test('the bar figures: spent of limit, then left or over', () => {
  assert.equal(
    caps.capFigures(cap('notebook', 5, 1.25)),
    nb('1.3 g of 5 g CO₂e · 3.8 g left')
  );
  assert.equal(
    caps.capFigures(cap('notebook', 5, 6)),
    nb('6 g of 5 g CO₂e · 1 g over')
  );
  assert.equal(caps.capName(cap('notebook', 5, 1)), 'Notebook budget');
  assert.equal(caps.capName(cap('day', 5, 1)), 'Day budget');
});

test('the day cap is found among the caps, or none', () => {
  const day = cap('day', 50, 1);
  assert.equal(caps.dayCap([cap('notebook', 5, 1), day]), day);
  assert.equal(caps.dayCap([cap('notebook', 5, 1)]), null);
  assert.equal(caps.dayCap([]), null);
});
