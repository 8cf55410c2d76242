import { type ParseArgsOptionsConfig, parseArgs } from 'node:util';
import { ConfigError } from '../config-error.ts';

/**
 * `-h`/`--help` given to a command. Thrown by `parseCommand`, not returned, so that no command can go
 * on to do its work when asked only for its help (`manifest delete REF -h` once deleted the manifest);
 * main prints `help` on stdout and exits 0.
 */
export class HelpRequested extends Error {
  override name = 'HelpRequested';
  readonly help: string;
  constructor(help: string) {
    super(help);
    this.help = help;
  }
}

/** How many positional arguments a command takes: at least, at most (`Infinity` for FILE...). */
export type Arity = readonly [min: number, max: number];

export interface CommandSpec<O extends ParseArgsOptionsConfig> {
  /** The command's flags; `-h`/`--help` is added to them. */
  options: O;
  /** The synopsis, shown with a usage error. */
  usage: string;
  /** What `-h`/`--help` prints (the usage when not given). */
  help?: string;
  /**
   * The arguments the command takes; for a command with actions (`manifest get REF`), the actions it
   * knows and what each takes after its name.
   */
  positionals: Arity | Record<string, Arity>;
}

/**
 * How every command reads its arguments: unknown flags are usage errors (exit 2), `-h`/`--help` stops
 * the command before it does anything, and an argument too many is refused rather than ignored (a
 * `tag REF t1 t2` that quietly set only t1 looked like success).
 */
export function parseCommand<const O extends ParseArgsOptionsConfig>(argv: string[], spec: CommandSpec<O>) {
  const parsed = parseArgs({
    args: argv,
    options: { ...spec.options, help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
    strict: true,
  });
  const { values } = parsed;
  // Typed per command at the call site; here, before O is known, only `help` is certain.
  if ((values as { help?: boolean }).help) throw new HelpRequested(spec.help ?? spec.usage);
  let positionals = parsed.positionals;
  let action: string | undefined;
  let arity: Arity;
  if (isArity(spec.positionals)) arity = spec.positionals;
  else {
    [action, ...positionals] = positionals;
    if (action === undefined) throw new ConfigError(spec.usage);
    if (!Object.hasOwn(spec.positionals, action))
      throw new ConfigError(`unknown action "${action}"\n${spec.usage}`);
    arity = spec.positionals[action]!;
  }
  const [min, max] = arity;
  if (positionals.length > max) {
    const extra = positionals.slice(max).map((a) => `"${a}"`);
    throw new ConfigError(
      `unexpected argument${extra.length > 1 ? 's' : ''} ${extra.join(' ')}\n${spec.usage}`,
    );
  }
  if (positionals.length < min) throw new ConfigError(spec.usage);
  return { values, action, positionals };
}

function isArity(value: Arity | Record<string, Arity>): value is Arity {
  return Array.isArray(value);
}
