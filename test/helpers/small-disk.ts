import { spawnSync } from 'node:child_process';
import { skipUnlessStrict } from './skip.ts';

/**
 * Whether a server can be given a small file system of its own: a tmpfs mounted in a new user and mount
 * namespace (`unshare -rm`), which needs neither root nor any change to this machine. A `skip` option;
 * under TETHER_TEST_STRICT=1 importing this file throws where that cannot be done.
 */
export const smallDiskSkip = skipUnlessStrict(
  (process.platform !== 'linux' ||
    spawnSync('unshare', ['-rm', 'sh', '-c', 'mount -t tmpfs -o size=1m tmpfs /mnt'], { stdio: 'ignore' })
      .status !== 0) &&
    'needs unshare and tmpfs mounts in a user namespace',
);

/**
 * A spawnTether wrapper that runs the server with a `mib` MiB tmpfs mounted on `dir` (seen only by the
 * server: give it a data directory under `dir`). The server keeps its pid (the wrapper execs it).
 */
export const smallDiskWrapper = (dir: string, mib: number) => [
  'unshare',
  '-rm',
  'sh',
  '-c',
  `mount -t tmpfs -o size=${mib}m tmpfs "$0" && exec "$@"`,
  dir,
];
