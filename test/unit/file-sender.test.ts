import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { type FileHandle, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { sendFileRange } from '../../src/io/file-sender.ts';

/** A receiver that takes each chunk after a delay, so the sender meets backpressure and reuses buffers. */
function slowSink(delayMs: number, highWaterMark = 64 * 1024) {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    highWaterMark,
    write(chunk: Buffer, _enc, done) {
      // Copy now, as a socket copies into the kernel: the sender may reuse the buffer after `done`.
      chunks.push(Buffer.from(chunk));
      setTimeout(done, delayMs);
    },
  });
  return { sink, bytes: () => Buffer.concat(chunks) };
}

describe('sendFileRange', () => {
  let dir: string;
  let file: string;
  const content = randomBytes(5 * 1024 * 1024 + 12345);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tether-sender-'));
    file = join(dir, 'blob');
    await writeFile(file, content);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('sends a whole multi-buffer file byte for byte under backpressure', async () => {
    const handle = await open(file);
    const { sink, bytes } = slowSink(1);
    try {
      await sendFileRange(handle, 0, content.length, sink);
    } finally {
      await handle.close();
    }
    assert.ok(sink.writableFinished);
    assert.ok(bytes().equals(content));
  });

  test('onSent hears every piece the receiver took, once, adding up to the range', async () => {
    const handle = await open(file);
    const { sink, bytes } = slowSink(0);
    const heard: number[] = [];
    try {
      await sendFileRange(handle, 3, content.length - 3, sink, { onSent: (n) => heard.push(n) });
    } finally {
      await handle.close();
    }
    assert.ok(bytes().equals(content.subarray(3)));
    assert.equal(
      heard.reduce((a, b) => a + b, 0),
      content.length - 3,
    );
    assert.ok(heard.length >= 5, `${heard.length} pieces for a range of more than 5 buffers`);
  });

  test('a paced transfer writes whole buffers, falls back to 64 KiB writes after a slow one, and doubles them while they are quick', async () => {
    const KiB = 1024;
    const MiB = 1024 * KiB;
    const length = 3 * MiB;
    const sizes: number[] = [];
    const chunks: Buffer[] = [];
    const sink = new Writable({
      highWaterMark: 64 * KiB,
      write(chunk: Buffer, _enc, done) {
        sizes.push(chunk.length);
        chunks.push(Buffer.from(chunk));
        // Whole buffers are taken slowly (300 ms, over the 250 ms a quick write takes at most).
        setTimeout(done, chunk.length === MiB ? 300 : 0);
      },
    });
    const pace = { sent: 0, reading: false };
    const unpaced: number[] = [];
    const handle = await open(file);
    try {
      await sendFileRange(handle, 0, length, sink, { pace });
      const plain = new Writable({
        write(chunk: Buffer, _enc, done) {
          unpaced.push(chunk.length);
          done();
        },
      });
      await sendFileRange(handle, 0, length, plain);
    } finally {
      await handle.close();
    }
    assert.ok(Buffer.concat(chunks).equals(content.subarray(0, length)));
    assert.equal(pace.sent, length);
    const ramp = [64 * KiB, 128 * KiB, 256 * KiB, 512 * KiB, 64 * KiB];
    assert.deepEqual(sizes, [MiB, ...ramp, MiB]);
    // Without a pace, one write per buffer, as before.
    assert.deepEqual(unpaced, [MiB, MiB, MiB]);
  });

  test('a paced transfer says while it waits for a storage read, not while it waits for the receiver', {
    timeout: 10_000,
  }, async () => {
    const MiB = 1024 * 1024;
    const handle = await open(file);
    // A disk that answers the first buffer's read and then hangs, until `release()`: held reads are
    // passed to the file then.
    const held: Array<() => void> = [];
    const hanging = {
      read: (buffer: Buffer, offset: number, length: number, position: number) =>
        position < MiB
          ? handle.read(buffer, offset, length, position)
          : new Promise((resolve, reject) => {
              held.push(() => handle.read(buffer, offset, length, position).then(resolve, reject));
            }),
    } as unknown as FileHandle;
    const release = () => {
      for (const read of held.splice(0)) read();
    };
    const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    try {
      // The receiver takes everything at once: the transfer waits on the read past the first MiB.
      const taken = slowSink(0);
      const pace = { sent: 0, reading: false };
      const sent = sendFileRange(hanging, 0, 3 * MiB, taken.sink, { pace });
      await delay(200);
      assert.equal(pace.sent, MiB, 'the first buffer was taken');
      assert.ok(held.length > 0, 'a read is held');
      assert.equal(pace.reading, true, 'waiting for storage');
      release();
      await sent;
      assert.equal(pace.reading, false);
      assert.ok(taken.bytes().equals(content.subarray(0, 3 * MiB)));
      // The receiver takes nothing: the transfer waits on it, with its reads done.
      const stuck = new Writable({ write: () => {} });
      const idle = { sent: 0, reading: false };
      const stalled = sendFileRange(handle, 0, 3 * MiB, stuck, { pace: idle });
      await delay(200);
      assert.equal(idle.sent, 0);
      assert.equal(idle.reading, false, 'waiting for the receiver, not for storage');
      stuck.destroy();
      await assert.rejects(stalled, /receiver closed/);
    } finally {
      release();
      await handle.close();
    }
  });

  test('several transfers at once (past the read-ahead limit) each send byte for byte', async () => {
    const handle = await open(file);
    try {
      const sinks = Array.from({ length: 4 }, (_, i) => slowSink(i % 2));
      await Promise.all(sinks.map(({ sink }) => sendFileRange(handle, 0, content.length, sink)));
      for (const { bytes } of sinks) assert.ok(bytes().equals(content));
    } finally {
      await handle.close();
    }
  });

  test('sends a range that crosses buffer boundaries', async () => {
    const handle = await open(file);
    const { sink, bytes } = slowSink(0);
    const start = 1024 * 1024 - 7;
    const length = 2 * 1024 * 1024 + 99;
    try {
      await sendFileRange(handle, start, length, sink);
    } finally {
      await handle.close();
    }
    assert.ok(bytes().equals(content.subarray(start, start + length)));
  });

  test('a small blob and an empty one', async () => {
    const handle = await open(file);
    try {
      const small = slowSink(0);
      await sendFileRange(handle, 10, 100, small.sink);
      assert.ok(small.bytes().equals(content.subarray(10, 110)));
      const empty = slowSink(0);
      await sendFileRange(handle, 0, 0, empty.sink);
      assert.equal(empty.bytes().length, 0);
      assert.ok(empty.sink.writableFinished);
    } finally {
      await handle.close();
    }
  });

  test('rejects when the file is shorter than the requested length', async () => {
    const handle = await open(file);
    const { sink } = slowSink(0);
    try {
      await assert.rejects(sendFileRange(handle, content.length - 10, 20, sink), /shorter/);
    } finally {
      await handle.close();
    }
  });

  test('rejects instead of hanging when the receiver is destroyed mid-transfer', async () => {
    const handle = await open(file);
    const sink = new Writable({
      highWaterMark: 1024,
      write(_chunk, _enc, done) {
        // Never completes the first write, then goes away: like a client that stops reading and drops.
        setTimeout(() => sink.destroy(), 5);
        void done;
      },
    });
    sink.on('error', () => {});
    try {
      await assert.rejects(
        sendFileRange(handle, 0, content.length, sink),
        /the receiver closed before the blob was sent/,
      );
    } finally {
      await handle.close();
    }
  });

  test('rejects at once when the receiver was gone before the call, for an empty blob too', {
    timeout: 5000,
  }, async () => {
    const handle = await open(file);
    try {
      for (const length of [0, 10]) {
        const sink = new Writable({ write: (_chunk, _enc, done) => done() });
        sink.destroy();
        await once(sink, 'close');
        await assert.rejects(sendFileRange(handle, 0, length, sink), /receiver closed/);
      }
    } finally {
      await handle.close();
    }
  });

  test('serves an HTTP client that disconnects halfway without leaking or hanging', async () => {
    const results: Array<Promise<void>> = [];
    const server = http.createServer(async (_req, res) => {
      const handle = await open(file);
      res.writeHead(200, { 'Content-Length': content.length });
      const sent = sendFileRange(handle, 0, content.length, res).finally(() => handle.close());
      results.push(sent);
      await sent.catch(() => {});
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    try {
      // A complete download first: the body matches.
      const full = await fetch(`http://127.0.0.1:${port}/`);
      assert.ok(Buffer.from(await full.arrayBuffer()).equals(content));
      // Then one that reads 64 KiB and drops the connection.
      await new Promise<void>((resolve) => {
        const req = http.get(`http://127.0.0.1:${port}/`, (res) => {
          let seen = 0;
          res.on('data', (chunk: Buffer) => {
            seen += chunk.length;
            if (seen >= 64 * 1024) {
              req.destroy();
              resolve();
            }
          });
        });
        req.on('error', () => {});
      });
      const settled = await Promise.allSettled(results);
      assert.equal(settled[0]?.status, 'fulfilled');
      assert.equal(settled[1]?.status, 'rejected');
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
