import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { test } from 'node:test';
import type { BodySink } from '../../src/client/body-sink.ts';
import { ContentCheck, ContentMismatchError, verifying } from '../../src/client/verify-stream.ts';

const chunks = (count: number, fill: (i: number) => number) =>
  Array.from({ length: count }, (_, i) => Buffer.alloc(1000, fill(i)));

/** Runs `parts` through `verifying` and returns what came out, and the error if it failed. */
async function through(parts: Buffer[], digest: string, size: number) {
  const received: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      received.push(chunk);
      callback();
    },
  });
  const error = await pipeline(Readable.from(parts), verifying(digest, size), sink).then(
    () => undefined,
    (err: unknown) => err,
  );
  return { received: Buffer.concat(received), error };
}

test('verifying passes matching content through whole', async () => {
  const parts = chunks(5, (i) => i);
  const whole = Buffer.concat(parts);
  const digest = `sha256:${createHash('sha256').update(whole).digest('hex')}`;
  const { received, error } = await through(parts, digest, whole.length);
  assert.equal(error, undefined);
  assert.ok(received.equals(whole));
});

test('verifying never hands on all of content that does not match its digest', async () => {
  const good = chunks(5, (i) => i);
  const digest = `sha256:${createHash('sha256').update(Buffer.concat(good)).digest('hex')}`;
  // Same size, last byte changed: only the end can tell.
  const bad = chunks(5, (i) => i);
  const last = bad[4]!;
  last[999] = last[999]! ^ 0xff;
  const { received, error } = await through(bad, digest, 5000);
  assert.ok(error instanceof ContentMismatchError);
  assert.match(error.message, /content hashes to sha256:/);
  assert.ok(received.length < 5000, `${received.length} of 5000 bytes were handed on`);
});

/** Lends `parts` to a sink through `ContentCheck.checking`, as a download or layout read does. */
async function lentThrough(parts: Buffer[], digest: string, size: number | undefined) {
  const received: Buffer[] = [];
  const pour = async (sink: BodySink) => {
    for (const part of parts) await sink.write(part);
  };
  const error = await new ContentCheck(digest, size)
    .checking(pour)({ write: (chunk) => void received.push(Buffer.from(chunk)) })
    .then(
      () => undefined,
      (err: unknown) => err,
    );
  return { received: Buffer.concat(received), error };
}

test('a checked pour with a known size never lends all of content that does not match', async () => {
  const good = chunks(5, (i) => i);
  const digest = `sha256:${createHash('sha256').update(Buffer.concat(good)).digest('hex')}`;
  assert.deepEqual(await lentThrough(good, digest, 5000), {
    received: Buffer.concat(good),
    error: undefined,
  });
  const bad = chunks(5, (i) => i);
  bad[4]![999] = bad[4]![999]! ^ 0xff;
  const { received, error } = await lentThrough(bad, digest, 5000);
  assert.ok(error instanceof ContentMismatchError);
  assert.equal(received.length, 4000, 'the last chunk was held back');
  // Without a size only the end can tell, and the sink has had everything by then.
  assert.ok((await lentThrough(bad, digest, undefined)).error instanceof ContentMismatchError);
  // More bytes than the size fail at the first one over it.
  const long = await lentThrough([...good, Buffer.alloc(1)], digest, 5000);
  assert.match(String(long.error), /more than the 5000 bytes/);
  assert.equal(long.received.length, 5000);
});
