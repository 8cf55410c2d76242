import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { digestOf, parseDigest, tryParseDigest } from '../../src/oci/digest.ts';
import { OciError } from '../../src/oci/errors.ts';
import { parseManifest } from '../../src/oci/manifest.ts';
import { bareMediaType, isValidMediaType } from '../../src/oci/mediatypes.ts';
import { isValidRepositoryName, isValidTag } from '../../src/oci/reference.ts';
import { parseReferrersTag, referrersTagFor } from '../../src/oci/referrers-tag.ts';

const HEX64 = 'a'.repeat(64);
const D = `sha256:${HEX64}`;

describe('digests', () => {
  test('sha256 and sha512 with exact lowercase hex lengths', () => {
    assert.equal(tryParseDigest(D)?.algorithm, 'sha256');
    assert.equal(tryParseDigest(`sha512:${'b'.repeat(128)}`)?.hex.length, 128);
    for (const bad of [
      `sha256:${'A'.repeat(64)}`,
      `sha256:${'a'.repeat(63)}`,
      `sha512:${HEX64}`,
      `md5:${'a'.repeat(32)}`,
      'sha256:',
      ':abc',
      'sha256',
      `SHA256:${HEX64}`,
      `sha256:${'a'.repeat(300)}`,
    ]) {
      assert.equal(tryParseDigest(bad), undefined, bad);
    }
    assert.throws(
      () => parseDigest('sha256:x'),
      (e: OciError) => e.status === 400 && e.code === 'DIGEST_INVALID',
    );
  });
  test('well-known constants', () => {
    assert.equal(
      digestOf('sha256', Buffer.alloc(0)),
      'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    );
    assert.equal(
      digestOf('sha256', Buffer.from('{}')),
      'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a',
    );
  });
});

describe('names and tags', () => {
  test('repository names follow the grammar and a 255-character cap', () => {
    for (const ok of ['a', 'a/b', 'library/ubuntu', 'a.b_c__d-e--f', 'a0/b1/c2', 'x'.repeat(255)])
      assert.ok(isValidRepositoryName(ok), ok);
    for (const bad of [
      '',
      'A',
      'a/',
      '/a',
      'a//b',
      '..',
      'a/../b',
      '-a',
      'a-',
      'a___b',
      'a..b',
      'a b',
      'x'.repeat(256),
    ]) {
      assert.ok(!isValidRepositoryName(bad), bad);
    }
  });
  test('tags: 128 characters, no leading dot or dash', () => {
    for (const ok of ['latest', 'v1.0', '_x', 'A-b.c_d', 'a'.repeat(128)]) assert.ok(isValidTag(ok), ok);
    for (const bad of ['', '.hidden', '-x', 'a'.repeat(129), 'a:b', 'a/b']) assert.ok(!isValidTag(bad), bad);
  });
});

describe('media types', () => {
  test('RFC 6838 names; bare types without parameters', () => {
    assert.ok(isValidMediaType('application/vnd.oci.image.manifest.v1+json'));
    assert.ok(!isValidMediaType('application'));
    assert.ok(!isValidMediaType('a/b c'));
    assert.ok(!isValidMediaType(7));
    assert.equal(bareMediaType(' Application/JSON ; charset=utf-8'), 'application/json');
    assert.equal(bareMediaType(''), undefined);
  });
});

describe('referrers tag schema', () => {
  test('sha256 whole, sha512 truncated to 64 hex; parse is the inverse prefix', () => {
    assert.equal(referrersTagFor({ algorithm: 'sha256', hex: HEX64 }), `sha256-${HEX64}`);
    const long = 'c'.repeat(128);
    assert.equal(referrersTagFor({ algorithm: 'sha512', hex: long }), `sha512-${'c'.repeat(64)}`);
    assert.deepEqual(parseReferrersTag(`sha256-${HEX64}`), { digestPrefix: D, complete: true });
    assert.deepEqual(parseReferrersTag(`sha512-${'c'.repeat(64)}`), {
      digestPrefix: `sha512:${'c'.repeat(64)}`,
      complete: false,
    });
    for (const bad of ['latest', `sha256-${'a'.repeat(63)}`, `md5-${HEX64}`, `sha256-${'A'.repeat(64)}`])
      assert.equal(parseReferrersTag(bad), undefined);
  });
});

describe('manifest parsing', () => {
  const config = { mediaType: 'application/vnd.oci.image.config.v1+json', digest: D, size: 2 };
  const parse = (body: unknown, type?: string) => parseManifest(Buffer.from(JSON.stringify(body)), type);
  const invalid = (body: unknown, type?: string) =>
    assert.throws(
      () => (typeof body === 'string' ? parseManifest(Buffer.from(body), type) : parse(body, type)),
      (e: OciError) => e.status === 400 && e.code === 'MANIFEST_INVALID',
    );

  test('a member spelled like a checked field in another case is refused (Go clients would read it)', () => {
    const manifest = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config };
    const layer = { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: D, size: 2 };
    const refused = (body: string, member: string, field: string) =>
      assert.throws(
        () => parseManifest(Buffer.from(body), undefined),
        (e: OciError) =>
          e.status === 400 &&
          e.code === 'MANIFEST_INVALID' &&
          e.message.includes(`${member} is ${field} spelled in another case`),
      );
    const withLayer = (extra: string) =>
      JSON.stringify({ ...manifest, layers: [layer] }).replace(`"size":2}]`, `"size":2,${extra}}]`);
    // A second digest that Go takes (last match wins) while this parser checks the first.
    refused(withLayer('"Digest":"sha256:0"'), 'layers[0].Digest', 'digest');
    // Inline data under another spelling: data to Go, unchecked here.
    refused(withLayer('"Data":"AAAA"'), 'layers[0].Data', 'data');
    refused(withLayer('"DATA":"AAAA"'), 'layers[0].DATA', 'data');
    // Go folds the long s (U+017F) to s.
    refused(withLayer('"\u017fize":3'), 'layers[0].\u017fize', 'size');
    refused(JSON.stringify({ ...manifest, layers: [], Layers: [layer] }), 'Layers', 'layers');
    refused(JSON.stringify({ ...manifest, layers: [], Subject: layer }), 'Subject', 'subject');
    refused(
      JSON.stringify({ ...manifest, layers: [], config: { ...config, MediaType: 'x/y' } }),
      'config.MediaType',
      'mediaType',
    );
    // Members the parser does not check, in any case, are kept as they are (the bytes are stored as sent).
    assert.equal(
      parse({ ...manifest, layers: [{ ...layer, Platform2: 1, extra: 'x' }], Foo: 1 }).blobs.length,
      2,
    );
  });

  test('artifactType: explicit first, then config.mediaType; an index without one has none', () => {
    assert.equal(
      parse({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config, layers: [] })
        .artifactType,
      config.mediaType,
    );
    assert.equal(
      parse({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        artifactType: 'x/y',
        config,
        layers: [],
      }).artifactType,
      'x/y',
    );
    assert.equal(
      parse({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        artifactType: '',
        config,
        layers: [],
      }).artifactType,
      config.mediaType,
    );
    assert.equal(
      parse({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] })
        .artifactType,
      undefined,
    );
  });
  test('subject for OCI types only; Docker types ignore it', () => {
    const subject = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: D, size: 10 };
    assert.equal(
      parse({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config,
        layers: [],
        subject,
      }).subject?.digest,
      D,
    );
    const docker = parse({
      schemaVersion: 2,
      mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
      config,
      layers: [],
      subject,
    });
    assert.equal(docker.subject, undefined);
  });
  test('pathological structure is refused before JSON.parse builds it (audit-sec #5)', () => {
    const reason = (body: string) => {
      try {
        parseManifest(Buffer.from(body), 'application/vnd.oci.image.manifest.v1+json');
      } catch (e) {
        assert.equal((e as OciError).code, 'MANIFEST_INVALID');
        return (e as OciError).message;
      }
      assert.fail('accepted');
    };
    const size = 4 * 1024 * 1024 - 16;
    assert.match(reason(`{"a":${'['.repeat(size / 2)}${']'.repeat(size / 2)}}`), /nested deeper/);
    assert.match(reason(`{"a":[${'{},'.repeat(size / 3)}{}]}`), /more than 100000 objects/);
    const keys = Array.from({ length: 20_000 }, (_, i) => `"k${i}":""`).join(',');
    assert.match(reason(`{"schemaVersion":2,"annotations":{${keys}}}`), /more than 10000 members/);
    // Deep enough for anything real: unknown fields nested 20 levels are fine.
    let nested: unknown = 'x';
    for (let i = 0; i < 20; i++) nested = { n: [nested] };
    parse({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config,
      layers: [],
      x: nested,
    });
  });
  test('what Go clients would read differently is refused: BOM, duplicate names, non-integer sizes (audit-sec #8)', () => {
    const body = (extra = '', cfg = '"size":2') =>
      `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"${D}",${cfg}},"layers":[]${extra}}`;
    parseManifest(Buffer.from(body()), undefined);
    invalid(`\ufeff${body()}`);
    invalid(body(',"layers":[]'));
    invalid(body(',"mediaType":"application/vnd.oci.image.index.v1+json"'));
    invalid(body(',"\\u006cayers":[]'));
    invalid(body('', '"size":2,"size":3'));
    invalid(body('', '"size":2.0'));
    invalid(body('', '"size":2e0'));
    invalid(body('', '"size":2E0'));
    invalid(body().replace('"schemaVersion":2', '"schemaVersion":2.0'));
    // The same name in different objects, and escapes in strings, are fine.
    parseManifest(Buffer.from(body(',"annotations":{"mediaType":"a\\"b","size":"1.0"}')), undefined);
  });
  test('required blobs skip non-distributable layers with urls; unknown fields are fine', () => {
    const foreign = {
      mediaType: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
      digest: `sha256:${'f'.repeat(64)}`,
      size: 1,
      urls: ['https://example.com/x'],
    };
    const normal = {
      mediaType: 'application/vnd.oci.image.layer.v1.tar',
      digest: `sha256:${'e'.repeat(64)}`,
      size: 1,
      newUnspecifiedField: null,
    };
    const parsed = parse({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config,
      layers: [foreign, normal],
      extra: { x: 1 },
    });
    assert.deepEqual(
      parsed.blobs.map((b) => b.digest),
      [D, normal.digest],
    );
  });
  test('media type from the body, else Content-Type, else the shape; mismatches refused', () => {
    assert.equal(
      parse({ schemaVersion: 2, config, layers: [] }, 'application/vnd.oci.image.manifest.v1+json').mediaType,
      'application/vnd.oci.image.manifest.v1+json',
    );
    assert.equal(
      parse({ schemaVersion: 2, manifests: [] }).mediaType,
      'application/vnd.oci.image.index.v1+json',
    );
    assert.equal(
      parse(
        { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] },
        'application/json; charset=utf-8',
      ).kind,
      'index',
    );
    invalid(
      { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] },
      'application/vnd.oci.image.manifest.v1+json',
    );
    invalid({ schemaVersion: 2 });
  });
  test('invalid bodies and descriptors', () => {
    invalid('{');
    invalid('[1]');
    invalid({ schemaVersion: 1, config, layers: [] }, 'application/vnd.oci.image.manifest.v1+json');
    invalid({ schemaVersion: 2, mediaType: 'application/vnd.unknown+json' });
    for (const size of [-1, 1.5, 2 ** 60, '1']) {
      invalid({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { ...config, size },
        layers: [],
      });
    }
    invalid({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config,
      layers: [],
      annotations: { a: 1 },
    });
    invalid({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config,
      layers: [],
      subject: { mediaType: 'a/b', digest: 'sha256:zz', size: 1 },
    });
    assert.throws(
      () => parseManifest(Buffer.from([0x7b, 0xff, 0x7d]), undefined),
      (e: OciError) => e.code === 'MANIFEST_INVALID',
    );
  });
});

describe('errors', () => {
  test('OciError renders the spec JSON and carries several entries', () => {
    const err = OciError.many(400, [
      { code: 'MANIFEST_BLOB_UNKNOWN', message: 'a', detail: { digest: 'x' } },
      { code: 'MANIFEST_BLOB_UNKNOWN', message: 'b' },
    ]);
    assert.deepEqual(JSON.parse(JSON.stringify(err)), {
      errors: [
        { code: 'MANIFEST_BLOB_UNKNOWN', message: 'a', detail: { digest: 'x' } },
        { code: 'MANIFEST_BLOB_UNKNOWN', message: 'b' },
      ],
    });
    assert.equal(err.status, 400);
  });
});
