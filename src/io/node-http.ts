import type * as NodeHttp from 'node:http';
import type * as NodeHttp2 from 'node:http2';
import type * as NodeHttps from 'node:https';
import type * as NodeTls from 'node:tls';

/**
 * node:http, taken without its ES module facade. `import … from 'node:http'` builds the facade by
 * reading every export, and a few exports (`WebSocket`, `MessageEvent`, `CloseEvent`) are getters that
 * load undici, Node's fetch, which neither the server nor the client uses: measured, that import
 * cost 30 ms of start-up and 14 MB of resident memory. `process.getBuiltinModule` returns the module
 * itself, whose lazy getters stay untouched.
 */
export const http: typeof NodeHttp = process.getBuiltinModule('node:http');

/**
 * node:https, node:http2 and node:tls, loaded on first use: TLS costs ~10 ms of start-up, which a
 * command or a server that only speaks plain HTTP (a registry on loopback) need not pay.
 */
export const https = (): typeof NodeHttps => process.getBuiltinModule('node:https');
export const http2 = (): typeof NodeHttp2 => process.getBuiltinModule('node:http2');
export const tls = (): typeof NodeTls => process.getBuiltinModule('node:tls');
