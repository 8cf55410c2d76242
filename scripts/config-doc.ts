/**
 * Prints the settings table of docs/configuration.md from SETTINGS, the one declaration of every setting.
 * `node scripts/config-doc.ts` prints it; test/unit/config-doc.test.ts fails when the doc drifts.
 */
import { SETTINGS } from '../src/config.ts';

export function settingsTable(): string {
  const rows = SETTINGS.map((s) => {
    const kind =
      s.kind.type === 'enum'
        ? s.kind.values.map((v) => `\`${v}\``).join(' \\| ')
        : s.kind.type === 'json'
          ? 'list'
          : s.kind.type;
    const flag = s.flag ? `\`--${s.flag}\`` : '';
    return `| \`${s.key}\` | \`${s.env}\` | ${flag} | ${kind} | \`${JSON.stringify(s.default)}\` | ${s.description} |`;
  });
  return [
    '| key (file) | environment | flag | type | default | meaning |',
    '|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(settingsTable());
