import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { settingsTable } from '../../scripts/config-doc.ts';

test('docs/configuration.md carries the settings table generated from SETTINGS', () => {
  const doc = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
  assert.ok(
    doc.includes(settingsTable()),
    'run `node scripts/config-doc.ts` and paste the table into docs/configuration.md',
  );
});
