/**
 * Physical limits of this machine, the ceilings the registry numbers are compared against:
 * single-core sha256 throughput, durable write speed of the data disk (1 GiB written and fdatasync'ed),
 * and a loopback socket copy of 1 GiB.   node bench/limits.ts [--dir DATA_DIR] [--size-mb 1024]
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const MB = 1024 * 1024;

export interface Limits {
  sha256MBps: number;
  durableWriteMBps: number;
  loopbackMBps: number;
}

export async function measureLimits(dir: string, sizeMb = 1024): Promise<Limits> {
  const chunk = randomBytes(4 * MB);
  const chunks = Math.ceil((sizeMb * MB) / chunk.length);
  const rate = (ms: number) => Math.round((chunks * chunk.length) / MB / (ms / 1000));

  let t = performance.now();
  const hash = createHash('sha256');
  for (let i = 0; i < chunks; i++) hash.update(chunk);
  hash.digest();
  const sha256MBps = rate(performance.now() - t);

  const scratch = await mkdtemp(join(dir, 'tether-limits-'));
  try {
    const file = await open(join(scratch, 'write-test'), 'w');
    t = performance.now();
    for (let i = 0; i < chunks; i++) await file.write(chunk);
    await file.datasync();
    const durableWriteMBps = rate(performance.now() - t);
    await file.close();

    const loopbackMBps = await new Promise<number>((resolve, reject) => {
      const server = net.createServer((socket) => {
        let received = 0;
        socket.on('data', (d) => {
          received += d.length;
        });
        socket.on('end', () => {
          const ms = performance.now() - t;
          server.close();
          resolve(Math.round(received / MB / (ms / 1000)));
        });
      });
      server.listen(0, '127.0.0.1', async () => {
        const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
        client.on('error', reject);
        t = performance.now();
        for (let i = 0; i < chunks; i++) {
          if (!client.write(chunk)) await new Promise((r) => client.once('drain', r));
        }
        client.end();
      });
    });
    return { sha256MBps, durableWriteMBps, loopbackMBps };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: { dir: { type: 'string', default: tmpdir() }, 'size-mb': { type: 'string', default: '1024' } },
  });
  console.log(JSON.stringify(await measureLimits(values.dir, Number(values['size-mb'])), null, 2));
}
