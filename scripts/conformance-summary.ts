/**
 * Summarises one run of the OCI conformance suite from its own verdict listing (`<test path>: Pass|Fail|
 * Error|Skip|Disabled`, one line per test node). JUnit cannot be used for this: it writes tests the
 * configuration disables and tests the registry made it skip alike, as `skipped`.
 * Prints `<label>: N passed, N failed, N skipped`, names every failed and skipped test, and exits 1 when
 * anything failed or errored, or was skipped (unless --allow-skip), or nothing passed.
 *   node scripts/conformance-summary.ts LABEL SUITE_LOG [--allow-skip]
 */
import { readFileSync } from 'node:fs';

const [label, file, flag] = process.argv.slice(2);
if (!label || !file) {
  console.error('usage: conformance-summary.ts LABEL SUITE_LOG [--allow-skip]');
  process.exit(2);
}
const counts = { Pass: 0, Fail: 0, Error: 0, Skip: 0, Disabled: 0 };
const failed: string[] = [];
const skipped: string[] = [];
const disabled = new Set<string>();
for (const line of readFileSync(file, 'utf8').split('\n')) {
  const m = /^\s*(OCI Conformance Test[^\n]*?): (Pass|Fail|Error|Skip|Disabled)\s*$/.exec(line);
  if (!m) continue;
  const [, name, verdict] = m as unknown as [string, string, keyof typeof counts];
  counts[verdict]++;
  if (verdict === 'Fail' || verdict === 'Error') failed.push(`${verdict.toUpperCase()} ${name}`);
  if (verdict === 'Skip') skipped.push(name);
  if (verdict === 'Disabled') disabled.add(name);
}
console.log(`${label}: ${counts.Pass} passed, ${counts.Fail + counts.Error} failed, ${counts.Skip} skipped`);
if (disabled.size > 0)
  console.log(`  (${counts.Disabled} disabled by the suite's configuration: ${[...disabled].join(', ')})`);
for (const name of failed) console.log(`  ${name}`);
for (const name of skipped) console.log(`  SKIPPED ${name}`);
const bad = failed.length > 0 || (flag !== '--allow-skip' && skipped.length > 0) || counts.Pass === 0;
process.exit(bad ? 1 : 0);
