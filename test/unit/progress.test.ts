import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { WriteStream } from 'node:tty';
import { ProgressBars, size } from '../../src/cli/progress.ts';

test('progress bars draw live lines, scroll finished blobs up, and clear before the result', async () => {
  let written = '';
  const out = {
    columns: 120,
    write: (s: string) => {
      written += s;
      return true;
    },
  } as unknown as WriteStream;
  const bars = new ProgressBars(out);
  const a = {
    mediaType: 'application/vnd.oci.image.layer.v1.tar',
    digest: `sha256:${'a'.repeat(64)}`,
    size: 4 * 1024 * 1024,
  };
  const b = {
    mediaType: 'application/vnd.oci.image.config.v1+json',
    digest: `sha256:${'b'.repeat(64)}`,
    size: 10,
  };
  bars.start(a);
  bars.start(b);
  bars.bytes(a, 1024 * 1024);
  await new Promise((r) => setTimeout(r, 150));
  assert.match(written, /\[======\s+\]\s+25% sha256:aaaaaaaaaaaa 1\.0 MiB\/4\.0 MiB/);
  assert.match(written, /total 1\.0 MiB\/4\.0 MiB/);
  bars.done(b, 'exists');
  assert.match(
    written,
    /✓ exists\s+sha256:bbbbbbbbbbbb\s+10 B\s+application\/vnd\.oci\.image\.config\.v1\+json\n/,
  );
  bars.bytes(a, 3 * 1024 * 1024);
  bars.done(a, 'transferred');
  bars.finish();
  assert.match(written, /✓ done\s+sha256:aaaaaaaaaaaa\s+4\.0 MiB/);
  // Live lines were erased (cursor up, clear) before a finished blob scrolled up, and none are left.
  assert.match(written, /\x1b\[3A\x1b\[J✓ exists/);
  assert.ok(written.endsWith('application/vnd.oci.image.layer.v1.tar\n'), 'no live line after finish()');
});

test('forTerminal stays silent for --quiet and --format json', () => {
  assert.equal(ProgressBars.forTerminal({ quiet: true }), undefined);
  assert.equal(ProgressBars.forTerminal({ format: 'json' }), undefined);
  assert.equal(size(0), '0 B');
  assert.equal(size(1536), '1.5 KiB');
  assert.equal(size(5 * 1024 ** 3), '5.0 GiB');
});
