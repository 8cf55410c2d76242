/**
 * Per-repository referrer policies. Rules are matched in order against the repository name with globs
 * (`*` within one path segment, `**` across segments); the first match wins, then the defaults apply.
 */
export type SubjectPolicy = 'accept' | 'require';
export type SubjectDeletePolicy = 'keep' | 'cascade';

export interface RepositoryPolicy {
  /** `accept` (spec behaviour): a missing subject is fine. `require`: it must exist (not 1.1 conformant). */
  subjectPolicy: SubjectPolicy;
  /** `keep` (weak links): referrers outlive their subject. `cascade`: deleting a subject deletes its tree. */
  onSubjectDelete: SubjectDeletePolicy;
}

export interface PolicyRule extends Partial<RepositoryPolicy> {
  repositories: string;
}

export const defaultPolicy: RepositoryPolicy = { subjectPolicy: 'accept', onSubjectDelete: 'keep' };

export function globToRegExp(glob: string): RegExp {
  let source = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') {
      source += '.*';
      i++;
    } else if (c === '*') source += '[^/]*';
    else source += c.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${source}$`);
}

export class PolicyResolver {
  readonly #rules: { pattern: RegExp; rule: PolicyRule }[];
  readonly #defaults: RepositoryPolicy;

  constructor(rules: PolicyRule[] = [], defaults: RepositoryPolicy = defaultPolicy) {
    this.#rules = rules.map((rule) => ({ pattern: globToRegExp(rule.repositories), rule }));
    this.#defaults = defaults;
  }

  for(repo: string): RepositoryPolicy {
    const match = this.#rules.find((r) => r.pattern.test(repo))?.rule;
    return {
      subjectPolicy: match?.subjectPolicy ?? this.#defaults.subjectPolicy,
      onSubjectDelete: match?.onSubjectDelete ?? this.#defaults.onSubjectDelete,
    };
  }
}

/** Validates policy rules from configuration; throws with a message naming the bad entry. */
export function parsePolicyRules(value: unknown): PolicyRule[] {
  if (!Array.isArray(value))
    throw new Error('must be a list of {repositories, subjectPolicy?, onSubjectDelete?}');
  return value.map((entry, i) => {
    if (typeof entry !== 'object' || entry === null) throw new Error(`entry ${i} must be an object`);
    const { repositories, subjectPolicy, onSubjectDelete, ...rest } = entry as Record<string, unknown>;
    if (Object.keys(rest).length > 0)
      throw new Error(`entry ${i} has unknown keys: ${Object.keys(rest).join(', ')}`);
    if (typeof repositories !== 'string' || repositories === '') {
      throw new Error(`entry ${i}: repositories must be a glob string`);
    }
    if (subjectPolicy !== undefined && subjectPolicy !== 'accept' && subjectPolicy !== 'require') {
      throw new Error(`entry ${i}: subjectPolicy must be accept or require`);
    }
    if (onSubjectDelete !== undefined && onSubjectDelete !== 'keep' && onSubjectDelete !== 'cascade') {
      throw new Error(`entry ${i}: onSubjectDelete must be keep or cascade`);
    }
    const rule: PolicyRule = { repositories };
    if (subjectPolicy) rule.subjectPolicy = subjectPolicy;
    if (onSubjectDelete) rule.onSubjectDelete = onSubjectDelete;
    return rule;
  });
}
