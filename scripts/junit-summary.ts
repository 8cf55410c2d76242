/**
 * Summarises a JUnit XML report in one line (`<label>: N passed, N failed, N skipped`), lists the
 * failing, erroring and skipped cases, and exits 1 when any failed/errored, or skipped unless allowed.
 *   node scripts/junit-summary.ts LABEL junit.xml [--allow-skip]
 */
import { readFileSync } from 'node:fs';

const [label, file, flag] = process.argv.slice(2);
if (!label || !file) {
  console.error('usage: junit-summary.ts LABEL FILE [--allow-skip]');
  process.exit(2);
}
const xml = readFileSync(file, 'utf8');
const decodeXml = (s: string) =>
  s
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');

const failed: string[] = [];
const skipped: string[] = [];
let passed = 0;
for (const m of xml.matchAll(/<testcase\b([^>]*?)(\/>|>([\s\S]*?)<\/testcase>)/g)) {
  const name = decodeXml(/\bname="([^"]*)"/.exec(m[1]!)?.[1] ?? '?');
  const body = m[3] ?? '';
  if (/<(failure|error)\b/.test(body)) failed.push(name);
  else if (/<skipped\b/.test(body)) skipped.push(name);
  else passed++;
}
const allowSkip = flag === '--allow-skip';
console.log(`${label}: ${passed} passed, ${failed.length} failed, ${skipped.length} skipped`);
for (const name of failed) console.log(`  FAILED  ${name}`);
for (const name of skipped) console.log(`  SKIPPED ${name}`);
process.exit(failed.length > 0 || (!allowSkip && skipped.length > 0) || passed === 0 ? 1 : 0);
