import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HelpRequested, parseCommand } from '../../src/cli/args.ts';
import { ConfigError } from '../../src/config-error.ts';

const spec = {
  options: { annotation: { type: 'string', multiple: true }, quiet: { type: 'boolean', short: 'q' } },
  usage: 'usage: tether thing REF NAME...',
  help: 'the whole help',
  positionals: [2, Infinity],
} as const;

test('-h and --help stop the command with its help, wherever they stand and however few the arguments', () => {
  for (const argv of [['-h'], ['REF', 'NAME', '--help'], ['--help', 'REF'], ['-qh']]) {
    assert.throws(
      () => parseCommand(argv, spec),
      (err) => err instanceof HelpRequested && err.help === 'the whole help',
      argv.join(' '),
    );
  }
  // A flag's value is not a request for help.
  assert.deepEqual(parseCommand(['REF', 'NAME', '--annotation=--help'], spec).values.annotation, ['--help']);
});

test('too few or too many positional arguments are usage errors that name the extras', () => {
  assert.throws(
    () => parseCommand(['REF'], spec),
    (err) => err instanceof ConfigError && err.message === spec.usage,
  );
  const one = { ...spec, positionals: [1, 1] as const };
  assert.throws(
    () => parseCommand(['a', 'b', 'c'], one),
    (err) => err instanceof ConfigError && err.message === `unexpected arguments "b" "c"\n${spec.usage}`,
  );
  assert.deepEqual(parseCommand(['REF', 't1', 't2', 't3'], spec).positionals, ['REF', 't1', 't2', 't3']);
  // Unknown flags stay errors of their own (exit 2 as well).
  assert.throws(() => parseCommand(['REF', 'NAME', '--bogus'], spec), {
    code: 'ERR_PARSE_ARGS_UNKNOWN_OPTION',
  });
});

test('commands with actions count the arguments of each action', () => {
  const actions = { ...spec, positionals: { get: [1, 1], put: [2, 2] } } as const;
  const { action, positionals } = parseCommand(['put', 'REF', 'FILE'], actions);
  assert.deepEqual({ action, positionals }, { action: 'put', positionals: ['REF', 'FILE'] });
  assert.throws(() => parseCommand(['get', 'REF', 'FILE'], actions), /unexpected argument "FILE"/);
  assert.throws(() => parseCommand(['put', 'REF'], actions), ConfigError);
  assert.throws(() => parseCommand(['toString', 'REF'], actions), /unknown action "toString"/);
  assert.throws(() => parseCommand([], actions), ConfigError);
  assert.throws(() => parseCommand(['-h'], actions), HelpRequested);
});
