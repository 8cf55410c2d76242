/** Raw HTTP/2 frames (RFC 9113 §4.1), for tests that must send what a well-behaved client would not. */

export const FRAME = {
  HEADERS: 0x1,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  GOAWAY: 0x7,
  CONTINUATION: 0x9,
} as const;
export const FLAG = { END_STREAM: 0x1, END_HEADERS: 0x4 } as const;
export const ERROR_CODE = { REFUSED_STREAM: 0x7 } as const;

/** One frame: 24-bit length, type, flags, stream id, payload. */
export function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

/** The client connection preface and an empty SETTINGS frame. */
export const PREFACE = Buffer.concat([
  Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
  frame(FRAME.SETTINGS, 0, 0, Buffer.alloc(0)),
]);
