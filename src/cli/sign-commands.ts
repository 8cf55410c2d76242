import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError } from '../config-error.ts';
import { generateCertificateChain, KEY_TYPES, type KeyType } from '../sign/certs.ts';
import { loadTrustPolicy, type SignatureShape, signImage, verifyImage } from '../sign/registry.ts';
import { addToTrustStore, defaultTrustStoreDir } from '../sign/trust-store.ts';
import { parseCommand } from './args.ts';
import { checkScopeFlag, openReference, parseAnnotations, parseClientCommand } from './client-commands.ts';

export const SIGN_USAGE = `Signing commands (Notary Project format, interoperable with notation):
REF is HOST/REPO[:TAG][@DIGEST] or, in an OCI image layout, oci:DIR[:TAG][@DIGEST] (notation's --oci-layout).
  sign REF --key KEY.pem --cert CHAIN.pem [--shape config|artifactType] [--expiry 24h] [-m K=V]...
                                      sign the digest REF resolves to; push the signature as its referrer
                                      (-m/--user-metadata: signed metadata)
  verify REF [--scope SCOPE] [--trust-policy FILE] [--trust-store DIR] [-m K=V]... [--max-signatures N]
         [--format json]              check REF's signatures against notation's trust policy and store;
                                      a layout is verified under the trust policy scope --scope names;
                                      -m/--user-metadata: metadata the signature must carry
  cert generate [--key-type ec-p256|ec-p384|ec-p521|rsa-2048|rsa-3072|rsa-4096] [-o DIR] [--cn NAME]
                [--valid-days N] [--trust-store-name NAME [--trust-store DIR]]
                                      a test root CA and signing certificate notation accepts
                                      (default ec-p384, CN tether-test-signer, valid 365 days, in .)
Verification uses notation's configuration directory: $NOTATION_CONFIG, else $XDG_CONFIG_HOME/notation
(an absolute XDG_CONFIG_HOME) or ~/.config/notation; on macOS ~/Library/Application Support/notation,
on Windows %AppData%\\notation.
Exit codes: 0 verified/signed, 1 verification failed or error, 2 usage error.`;

/** The latest expiry a signature header can hold: RFC 3339 (and Go's time parser) take four-digit years. */
const LATEST_EXPIRY = Date.UTC(9999, 11, 31, 23, 59, 59);

/** `--expiry 30m`, `24h`, `7d`, `90s`: the time that long after `now`; a usage error when it cannot be one. */
export function expiryAfter(value: string, now: number = Date.now()): Date {
  const m = /^(\d+)(s|m|h|d)$/.exec(value);
  if (!m) throw new ConfigError(`--expiry takes a duration like 24h, 7d or 30m, got "${value}"`);
  const ms = Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[m[2] as 's' | 'm' | 'h' | 'd'] * 1000;
  if (!(ms > 0)) throw new ConfigError(`--expiry must be longer than 0, got "${value}"`);
  const at = now + ms;
  if (!Number.isFinite(at) || at > LATEST_EXPIRY) {
    throw new ConfigError(
      `--expiry ${value} ends after 9999-12-31T23:59:59Z, the latest time a signature's expiry can hold`,
    );
  }
  return new Date(at);
}

export async function signCommand(argv: string[]): Promise<void> {
  const usage =
    'usage: tether sign REF --key KEY.pem --cert CHAIN.pem [--shape config|artifactType] [--expiry 24h] [-m/--user-metadata K=V]...';
  const { values, positionals } = parseClientCommand(argv, usage, [1, 1], {
    key: { type: 'string' },
    cert: { type: 'string' },
    shape: { type: 'string' },
    expiry: { type: 'string' },
    'user-metadata': { type: 'string', short: 'm', multiple: true },
  });
  const at = await openReference(positionals[0], usage, values);
  if (!values.key || !values.cert) throw new ConfigError(usage);
  const expiry = values.expiry ? expiryAfter(values.expiry) : undefined;
  const shape = (values.shape ?? 'config') as SignatureShape;
  if (shape !== 'config' && shape !== 'artifactType')
    throw new ConfigError('--shape takes config (notation v1.3, the default) or artifactType');
  const signed = await signImage(at.target, at.reference, {
    privateKeyPem: await readFile(values.key),
    certificateChainPem: await readFile(values.cert),
    shape,
    ...(expiry ? { expiry } : {}),
    userMetadata: parseAnnotations(values['user-metadata']),
  });
  if (values.format === 'json') {
    console.log(JSON.stringify(signed, null, 2));
    return;
  }
  if (!values.quiet)
    console.error(`signed ${at.target.name}@${signed.target.digest} (${signed.target.mediaType})`);
  console.log(signed.signature.digest);
}

export async function verifyCommand(argv: string[]): Promise<void> {
  const usage =
    'usage: tether verify REF [--scope SCOPE] [--trust-policy FILE] [--trust-store DIR] [-m/--user-metadata K=V]... [--max-signatures N]';
  const { values, positionals } = parseClientCommand(argv, usage, [1, 1], {
    'trust-policy': { type: 'string' },
    'trust-store': { type: 'string' },
    'max-signatures': { type: 'string' },
    'user-metadata': { type: 'string', short: 'm', multiple: true },
    scope: { type: 'string' },
  });
  const at = await openReference(positionals[0], usage, values);
  checkScopeFlag(at.target, values.scope);
  const max = values['max-signatures'] === undefined ? 100 : Number(values['max-signatures']);
  if (!Number.isInteger(max) || max < 1) throw new ConfigError('--max-signatures takes a positive integer');
  const metadata = parseAnnotations(values['user-metadata']);
  const outcome = await verifyImage(at.target, at.reference, {
    ...(values.scope ? { scope: values.scope } : {}),
    policy: await loadTrustPolicy(values['trust-policy']),
    trustStoreDir: values['trust-store'] ?? defaultTrustStoreDir(),
    maxSignatures: max,
    ...(Object.keys(metadata).length ? { userMetadata: metadata } : {}),
  });
  if (values.format === 'json') {
    // The parsed envelope (certificates) does not serialise usefully; the checks do.
    const plain = {
      ...outcome,
      signatures: outcome.signatures.map((s) => ({
        digest: s.digest,
        ...(s.skipped ? { skipped: s.skipped } : {}),
        ...(s.result
          ? {
              ok: s.result.ok,
              policy: s.result.policyName,
              level: s.result.level,
              signer: s.result.signer,
              checks: s.result.results,
            }
          : {}),
      })),
    };
    console.log(JSON.stringify(plain, null, 2));
  } else {
    for (const s of outcome.signatures) {
      if (s.skipped) {
        console.error(`  skipped ${s.digest}: ${s.skipped}`);
        continue;
      }
      const r = s.result!;
      console.error(
        `  ${r.ok ? '✓' : '✗'} ${s.digest} policy "${r.policyName}" (${r.level}) signer ${r.signer ?? '?'}`,
      );
      for (const c of r.results) {
        if (!c.checked) continue;
        const mark = c.ok ? 'ok' : c.enforced ? 'FAILED' : `failed (${c.action}, not enforced)`;
        console.error(`      ${c.check}: ${mark}${c.reason && !c.ok ? ` - ${c.reason}` : ''}`);
      }
    }
    if (outcome.ok)
      console.log(
        `verified ${outcome.reference}${outcome.verifiedBy ? ` by signature ${outcome.verifiedBy}` : ''}`,
      );
    else console.error(`tether: verification of ${outcome.reference} failed: ${outcome.reason}`);
  }
  if (!outcome.ok) process.exitCode = 1;
}

export async function certCommand(argv: string[]): Promise<void> {
  const { values } = parseCommand(argv, {
    options: {
      'key-type': { type: 'string' },
      output: { type: 'string', short: 'o' },
      cn: { type: 'string' },
      'valid-days': { type: 'string' },
      'trust-store-name': { type: 'string' },
      'trust-store': { type: 'string' },
    },
    usage:
      'usage: tether cert generate [--key-type TYPE] [-o DIR] [--cn NAME] [--valid-days N]\n' +
      '                            [--trust-store-name NAME [--trust-store DIR]]',
    help: SIGN_USAGE,
    positionals: { generate: [0, 0] },
  });
  const keyType = (values['key-type'] ?? 'ec-p384') as KeyType;
  if (!KEY_TYPES.includes(keyType)) throw new ConfigError(`--key-type takes one of ${KEY_TYPES.join(', ')}`);
  const days = values['valid-days'] === undefined ? 365 : Number(values['valid-days']);
  if (!Number.isInteger(days) || days < 1) throw new ConfigError('--valid-days takes a positive integer');
  const chain = generateCertificateChain({
    keyType,
    validDays: days,
    ...(values.cn ? { commonName: values.cn } : {}),
  });
  const dir = values.output ?? '.';
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'root.pem'), chain.rootCertificate);
  await writeFile(join(dir, 'leaf.pem'), chain.leafCertificate);
  await writeFile(join(dir, 'chain.pem'), chain.chain);
  await writeFile(join(dir, 'leaf.key'), chain.leafPrivateKey, { mode: 0o600 });
  console.error(`wrote ${dir}/{root.pem,leaf.pem,chain.pem,leaf.key} (${keyType})`);
  if (values['trust-store-name']) {
    const store = values['trust-store'] ?? defaultTrustStoreDir();
    const path = await addToTrustStore(store, 'ca', values['trust-store-name'], {
      'root.pem': chain.rootCertificate,
    });
    console.error(`trusted the root in ${path}`);
  }
}
