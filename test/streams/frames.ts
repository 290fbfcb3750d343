/** Test helpers: read stream frames as the wire protocol defines them (docs/streams.md). */
export interface Frame {
  type: string;
  channel: string;
  epoch: string | null;
  offset: number | null;
  /** `rec`: the count; `unrec`: the reason. */
  extra?: number | string;
  /** Data frames: the payload text. */
  body?: string;
}

/** Parses one recorded text message (as `connect()` records them); raw payloads come back as `raw`. */
export function parse(message: string): Frame | { type: 'raw'; body: string } {
  if (message.charCodeAt(0) !== 0x1e) return { type: 'raw', body: message };
  const nl = message.indexOf('\n');
  const header = JSON.parse(nl === -1 ? message.slice(1) : message.slice(1, nl)) as unknown[];
  if (header[0] !== 1) throw new Error(`unknown version in ${message}`);
  const frame: Frame = {
    type: header[1] as string,
    channel: header[2] as string,
    epoch: header[3] as string | null,
    offset: header[4] as number | null,
  };
  if (header.length > 5) frame.extra = header[5] as number | string;
  if (nl !== -1) frame.body = message.slice(nl + 1);
  return frame;
}

/** A short readable form: `m:3:body`, `sub:0`, `rec:5:2`, `unrec:epoch`, `raw:body`. */
export function short(message: string): string {
  const f = parse(message);
  if (f.type === 'raw') return `raw:${f.body}`;
  const fr = f as Frame;
  if (fr.type === 'm') return `m:${fr.offset}:${fr.body}`;
  if (fr.type === 'sub') return `sub:${fr.offset}`;
  if (fr.type === 'rec') return `rec:${fr.offset}:${fr.extra}`;
  return `unrec:${fr.extra}`;
}
