import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { editHtpasswd, hashPassword } from '../../src/auth/htpasswd.ts';
import { sha256 } from '../helpers/oci.ts';
import { spawnTether, type TetherProcess, tempDataDir } from '../helpers/tether-process.ts';

/**
 * Request bodies sent as 1-byte chunks of chunked transfer coding, against a real server process with
 * the production heap (128 MB, applied by `tether serve`). Node hands over every such chunk as a Buffer
 * of its own: kept one by one, 1 MiB of them on a manifest PUT, 2 MiB on an upload, or 60 anonymous
 * token requests killed the process with a V8 heap out-of-memory. Now each such body is refused for
 * that client alone and the registry goes on serving.
 */

interface RawReply {
  status: number;
  code?: string;
  text: string;
}

/**
 * Sends `head` (request line and headers, no blank line) with a chunked body of `chunks` 1-byte chunks,
 * stopping as soon as an answer arrives; resolves with the answer (status 0: the connection closed first).
 */
async function oneByteChunks(port: number, head: string, chunks: number): Promise<RawReply> {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.on('error', () => {});
  let text = '';
  let answered: () => void = () => {};
  const answer = new Promise<void>((resolve) => {
    answered = resolve;
  });
  const complete = () => {
    const end = text.indexOf('\r\n\r\n');
    if (end < 0) return false;
    const length = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, end));
    return length !== null && Buffer.byteLength(text.slice(end + 4)) >= Number(length[1]);
  };
  socket.on('data', (d) => {
    text += d;
    if (complete()) answered();
  });
  socket.on('close', () => answered());
  socket.write(`${head}\r\nTransfer-Encoding: chunked\r\n\r\n`);
  const piece = Buffer.from('1\r\nx\r\n'.repeat(1024));
  let done = false;
  void answer.then(() => {
    done = true;
  });
  for (let sent = 0; sent < chunks && !done && !socket.destroyed; sent += 1024) {
    if (!socket.write(piece)) await Promise.race([answer, new Promise((r) => socket.once('drain', r))]);
  }
  if (!done && !socket.destroyed) socket.write('0\r\n\r\n');
  const timer = setTimeout(() => answered(), 60_000);
  await answer;
  clearTimeout(timer);
  socket.destroy();
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
  const body = text.slice(text.indexOf('\r\n\r\n') + 4);
  let code: string | undefined;
  try {
    code = (JSON.parse(body) as { errors: { code: string }[] }).errors[0]?.code;
  } catch {
    // no JSON body
  }
  return { status, ...(code ? { code } : {}), text };
}

/** The registry still runs and answers `GET /v2/` with `status` (200 open, 401 when it asks for a token). */
async function alive(registry: TetherProcess, status: 200 | 401): Promise<void> {
  assert.equal(registry.proc.exitCode, null, `the registry died:\n${registry.output().slice(-2000)}`);
  const res = await fetch(`${registry.url}/v2/`);
  assert.equal(res.status, status, await res.text());
}

describe('bodies of 1-byte chunks: refused for that client, never the end of the registry', () => {
  let registry: TetherProcess;
  let port: number;
  let cleanup: () => Promise<void>;
  before(async () => {
    const data = await tempDataDir();
    cleanup = data.cleanup;
    registry = await spawnTether(data.dir, ['--log-level', 'warn']);
    port = Number(registry.host.split(':')[1]);
  });
  after(async () => {
    await registry.stop();
    await cleanup();
  });

  test('a manifest PUT of 1 MiB in 1-byte chunks', async () => {
    const reply = await oneByteChunks(
      port,
      'PUT /v2/hostile/manifests/t HTTP/1.1\r\nHost: x\r\nContent-Type: application/vnd.oci.image.manifest.v1+json',
      1024 * 1024,
    );
    assert.ok([400, 413].includes(reply.status), reply.text.slice(0, 300));
    await alive(registry, 200);
  });

  test('a monolithic blob POST and a PATCH of 2 MiB in 1-byte chunks', async () => {
    const digest = sha256(Buffer.alloc(2 * 1024 * 1024, 'x'));
    const post = await oneByteChunks(
      port,
      `POST /v2/hostile/blobs/uploads/?digest=${digest} HTTP/1.1\r\nHost: x`,
      2 * 1024 * 1024,
    );
    assert.ok([400, 413].includes(post.status), post.text.slice(0, 300));
    await alive(registry, 200);
    const session = await fetch(`${registry.url}/v2/hostile/blobs/uploads/`, { method: 'POST' });
    const location = session.headers.get('location')!;
    const patch = await oneByteChunks(port, `PATCH ${location} HTTP/1.1\r\nHost: x`, 2 * 1024 * 1024);
    assert.ok([400, 413].includes(patch.status), patch.text.slice(0, 300));
    await alive(registry, 200);
  });

  test('60 bodies of 1-byte chunks waiting, unread, behind one upload', async () => {
    // One PATCH holds the session (its body is declared and never sent whole); the others queue behind
    // it, their bodies arriving before anyone reads them.
    const session = await fetch(`${registry.url}/v2/hostile/blobs/uploads/`, { method: 'POST' });
    const location = session.headers.get('location')!;
    // The server asks for its body (100 Continue) only once the PATCH holds the session.
    const holder = net.connect(port, '127.0.0.1');
    holder.on('error', () => {});
    holder.write(
      `PATCH ${location} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n`,
    );
    await new Promise<void>((resolve, reject) => {
      let said = '';
      holder.on('data', (d: Buffer) => {
        said += d.toString('latin1');
        if (said.startsWith('HTTP/1.1 100 ')) resolve();
        else if (said.includes('\r\n')) reject(new Error(`the holding PATCH was answered: ${said}`));
      });
      holder.once('close', () => reject(new Error(`the holding PATCH was closed: ${said}`)));
    });
    holder.write('abc');
    const replies = await Promise.all(
      Array.from({ length: 60 }, () =>
        oneByteChunks(port, `PATCH ${location} HTTP/1.1\r\nHost: x`, 256 * 1024),
      ),
    );
    holder.destroy();
    await alive(registry, 200);
    for (const reply of replies) assert.ok([400, 413].includes(reply.status), reply.text.slice(0, 300));
  });
});

test('token mode: 60 anonymous token requests of 63 KiB in 1-byte chunks', async (t) => {
  const { dir, cleanup } = await tempDataDir();
  mkdirSync(join(dir, 'data'));
  const hash = await hashPassword('secret', 4);
  await editHtpasswd(join(dir, 'htpasswd'), (users) => {
    users.set('alice', hash);
  });
  const registry = await spawnTether(join(dir, 'data'), ['--log-level', 'warn'], {
    TETHER_AUTH_MODE: 'token',
    TETHER_AUTH_HTPASSWD: join(dir, 'htpasswd'),
  });
  t.after(async () => {
    await registry.stop();
    await cleanup();
  });
  const port = Number(registry.host.split(':')[1]);
  const replies = await Promise.all(
    Array.from({ length: 60 }, () =>
      oneByteChunks(
        port,
        'POST /auth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded',
        63 * 1024,
      ),
    ),
  );
  await alive(registry, 401);
  for (const reply of replies) assert.ok([400, 413].includes(reply.status), reply.text.slice(0, 300));
});
