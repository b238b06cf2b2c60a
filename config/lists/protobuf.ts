// The small part of protobuf that geosite.dat and geoip.dat need, on top of
// @bufbuild/protobuf's BinaryReader (which bounds every length it reads
// against the buffer and validates tags). We read the messages by hand
// instead of generating code: the schemas are four fields deep and fixed, and
// reading one entry's name before its body lets a selection skip the rest of
// a 60 MB file without decoding it.

import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';

export { BinaryReader, WireType };

/**
 * Calls `field` for each field of the message in `buf`; `field` reads the
 * value (true), returns false to have it skipped, or 'stop' once it has
 * what it wanted. Groups (proto2) never occur in
 * these files and are refused rather than recursed into.
 */
export function forEachField(buf: Uint8Array, field: (no: number, wt: WireType, r: BinaryReader) => boolean | 'stop'): void {
  const r = new BinaryReader(buf);
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (wt === WireType.StartGroup || wt === WireType.EndGroup) throw new Error(`protobuf group in field ${no}: not this format`);
    const took = field(no, wt, r);
    if (took === 'stop') return;
    if (!took) r.skip(wt, no);
  }
}
