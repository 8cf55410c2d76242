import { Readable } from 'node:stream';
import { digestOf } from '../oci/digest.ts';
import type { BodySink } from './body-sink.ts';
import { fileReader, hashFile, pourFile } from './file-streams.ts';

/** Something to upload: its digest and size known up front, its bytes streamed on demand (replayable). */
export interface BlobSource {
  digest: string;
  size: number;
  open(): Promise<Readable>;
  /**
   * Lends the bytes to `sink` instead of streaming them (a download's reused buffers; see
   * `BodySink`); set for blobs read from a registry. Transfers use it when it is there.
   */
  pour?(sink: BodySink): Promise<void>;
  /**
   * Set when the bytes are a whole file: one-PUT uploads then send it with reused buffers instead of
   * reading `open()`, and report what they sent to `onBytes` (the progress `open()` would have given).
   */
  file?: { path: string; onBytes?: (bytes: number) => void };
  /**
   * Set when `open` and `pour` fail unless the bytes match `digest` and `size` (blobs read from a
   * registry or a layout): a writer that checks what it stores need not hash them a second time.
   */
  verified?: boolean;
}

export function bufferSource(bytes: Buffer, algorithm: 'sha256' | 'sha512' = 'sha256'): BlobSource {
  return {
    digest: digestOf(algorithm, bytes),
    size: bytes.length,
    open: async () => Readable.from([bytes]),
  };
}

/**
 * A file as a blob source: hashed once up front (unless its digest and size are `known`, as when it
 * was hashed while it was written), read from disk for each upload attempt: lent from reused buffers
 * (`pour`) wherever the writer takes lent chunks, streamed (`open`) where it needs a stream.
 */
export async function fileSource(
  path: string,
  known?: { digest: string; size: number },
): Promise<BlobSource> {
  const { digest, size } = known ?? (await hashFile(path));
  return {
    digest,
    size,
    file: { path },
    open: async () => fileReader(path),
    pour: (sink) => pourFile(path, sink),
  };
}
