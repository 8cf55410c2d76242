import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { digestOf } from '../../src/oci/digest.ts';
import { checkInlineData, type InlinedDescriptor } from '../../src/oci/inline-data.ts';
import { parseManifest } from '../../src/oci/manifest.ts';

// 43 bytes, whose base64 has + and / and ends in ==.
const CONTENT = Buffer.from('{"architecture":"amd64","os":"linux"} ~~??>');
const DIGEST = digestOf('sha256', CONTENT);
const DATA = CONTENT.toString('base64');
const EMPTY_DIGEST = 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

const check = (data: unknown, digest = DIGEST, size = CONTENT.length) =>
  checkInlineData({ where: 'layers[0]', digest, size, data } satisfies InlinedDescriptor);

describe('a descriptor data member must be its content', () => {
  test('the content in standard padded base64, of the declared size and digest: accepted', () => {
    assert.ok(DATA.includes('+') && DATA.includes('/') && DATA.endsWith('=='), DATA);
    assert.equal(check(DATA), undefined);
    assert.equal(check('e30=', digestOf('sha256', Buffer.from('{}')), 2), undefined);
    // Padded to two, one and no = (1, 2 and 3 bytes in the last quantum).
    for (const bytes of ['a', 'ab', 'abc', 'abcd']) {
      const content = Buffer.from(bytes);
      assert.equal(check(content.toString('base64'), digestOf('sha256', content), content.length), undefined);
    }
  });

  test('empty data for the empty content, size 0: accepted; for anything else: refused', () => {
    assert.equal(check('', EMPTY_DIGEST, 0), undefined);
    assert.deepEqual(check('', DIGEST, CONTENT.length), { kind: 'size', decoded: 0 });
    assert.deepEqual(check('', DIGEST, 0), { kind: 'digest', computed: EMPTY_DIGEST });
  });

  test('the digest is computed with the descriptor algorithm (sha512)', () => {
    assert.equal(check(DATA, digestOf('sha512', CONTENT)), undefined);
    const other = digestOf('sha512', Buffer.from('other'));
    assert.deepEqual(check(DATA, other), { kind: 'digest', computed: digestOf('sha512', CONTENT) });
  });

  test('other content of the declared size: refused with the digest it has', () => {
    const other = Buffer.alloc(CONTENT.length, 0x41);
    assert.deepEqual(check(other.toString('base64')), {
      kind: 'digest',
      computed: digestOf('sha256', other),
    });
  });

  test('a size other than the decoded length: refused with the decoded length, before the digest', () => {
    assert.deepEqual(check(DATA, DIGEST, CONTENT.length + 1), { kind: 'size', decoded: CONTENT.length });
    assert.deepEqual(check(DATA, DIGEST, CONTENT.length - 1), { kind: 'size', decoded: CONTENT.length });
    assert.deepEqual(check(DATA, DIGEST, 0), { kind: 'size', decoded: CONTENT.length });
  });

  test('not standard padded base64: refused, saying why', () => {
    const encoding = (data: string, reason: RegExp) => {
      const problem = check(data);
      assert.equal(problem?.kind, 'encoding', `${JSON.stringify(data)}: ${JSON.stringify(problem)}`);
      assert.match((problem as { reason: string }).reason, reason, data);
    };
    encoding(CONTENT.toString('base64url'), /URL-safe/);
    encoding(DATA.replaceAll('+', '-'), /URL-safe/);
    encoding('e30', /padded/);
    encoding('YWI', /padded/);
    encoding('YQ=', /padded/);
    encoding(`${DATA.slice(0, 8)}\n${DATA.slice(8)}`, /whitespace/);
    encoding(` ${DATA}`, /whitespace/);
    encoding(`${DATA}\r\n`, /whitespace/);
    encoding(DATA.replace('/', '.'), /outside the base64 alphabet/);
    encoding('e30=e30=', /padding/);
    encoding('YQ===', /padded|padding/);
    encoding('====', /padding/);
    encoding('=e30', /padding/);
    // 'e31=' decodes to '{}' in lenient decoders, but its last character carries a stray bit.
    assert.ok(Buffer.from('e31=', 'base64').equals(Buffer.from('{}')));
    encoding('e31=', /canonical/);
    encoding('YR==', /canonical/);
  });

  test('not a string: refused, naming the JSON type', () => {
    assert.deepEqual(check(42), { kind: 'type', type: 'number' });
    assert.deepEqual(check(null), { kind: 'type', type: 'null' });
    assert.deepEqual(check(true), { kind: 'type', type: 'boolean' });
    assert.deepEqual(check({ bytes: DATA }), { kind: 'type', type: 'object' });
    assert.deepEqual(check([DATA]), { kind: 'type', type: 'object' });
  });

  test('a large data member is checked in linear time', () => {
    const big = Buffer.alloc(3 * 1024 * 1024, 0xfb);
    const started = performance.now();
    assert.equal(check(big.toString('base64'), digestOf('sha256', big), big.length), undefined);
    assert.equal(check(big.toString('base64url'), digestOf('sha256', big), big.length)?.kind, 'encoding');
    assert.ok(performance.now() - started < 2000);
  });
});

describe('parseManifest collects every data member it walks', () => {
  const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
  const descriptor = (data?: unknown) => ({
    mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    digest: DIGEST,
    size: CONTENT.length,
    ...(data === undefined ? {} : { data }),
  });
  const parse = (body: object) => parseManifest(Buffer.from(JSON.stringify(body)), undefined);

  test('config, every layer (foreign ones too) and the subject, as found; none when absent', () => {
    const foreign = {
      ...descriptor('x'),
      mediaType: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
      urls: ['https://example.com/layer'],
    };
    const parsed = parse({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: descriptor(DATA),
      layers: [descriptor(), descriptor(7), foreign],
      subject: descriptor(null),
    });
    assert.deepEqual(
      parsed.inlined.map((d) => [d.where, d.digest, d.size, d.data]),
      [
        ['subject', DIGEST, 43, null],
        ['config', DIGEST, 43, DATA],
        ['layers[1]', DIGEST, 43, 7],
        ['layers[2]', DIGEST, 43, 'x'],
      ],
    );
    const plain = parse({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: descriptor(), layers: [] });
    assert.deepEqual(plain.inlined, []);
  });

  test("an index's children, OCI and Docker; a Docker manifest's config and layers", () => {
    const index = parse({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [descriptor(), descriptor('')],
    });
    assert.deepEqual(
      index.inlined.map((d) => [d.where, d.data]),
      [['manifests[1]', '']],
    );
    const list = parse({
      schemaVersion: 2,
      mediaType: 'application/vnd.docker.distribution.manifest.list.v2+json',
      manifests: [descriptor(DATA)],
    });
    assert.deepEqual(
      list.inlined.map((d) => d.where),
      ['manifests[0]'],
    );
    const docker = parse({
      schemaVersion: 2,
      mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
      config: descriptor(DATA),
      layers: [descriptor(DATA)],
    });
    assert.deepEqual(
      docker.inlined.map((d) => d.where),
      ['config', 'layers[0]'],
    );
  });
});
