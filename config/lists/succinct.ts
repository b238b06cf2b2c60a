// The succinct trie both sing-box (sing common/domain/set.go) and mihomo
// (component/trie/domain_set.go) serialise their domain sets as; both are
// adapted from openacid/succinct. Three arrays:
//
//   leaves       []uint64  bit n set: node n ends a key
//   labelBitmap  []uint64  for each node in BFS order, one 0 bit per child
//                          then a 1 bit; bit i is bit (i & 63) of word i >> 6
//   labels       []byte    the edge label of every 0 bit, in the same order
//
// Nodes are numbered in BFS order, so the child reached by the k-th 0 bit
// (k counted from 0) is node k + 1, and a parent always has a smaller number
// than its children. That lets us enumerate every key in one pass over the
// bitmap, with no rank/select index and no recursion: we only need the
// stored keys, not the lookup structure.
//
// Keys are domains written backwards (so a suffix shares a trie prefix); the
// caller gets them forwards.

export class SuccinctError extends Error {
  override name = 'SuccinctError';
}

/** Longest key we accept: a name is at most 253 bytes, plus a marker or two. */
const MAX_KEY_BYTES = 512;
/** Total bytes of all keys together (real sets: a few MB). */
const MAX_TOTAL_KEY_BYTES = 64 * 1024 * 1024;
/** Edges (labels): 7 bytes of working memory each, so at most ~110 MB. Real sets: a few million. */
const MAX_LABELS = 16 * 1024 * 1024;

/** The bits of a Go []uint64 as written big-endian, read without copying. */
export interface Bitmap {
  bytes: Uint8Array; // length is a multiple of 8
}

function bit(bm: Bitmap, i: number): number {
  const byte = (i >>> 6) * 8 + 7 - ((i >>> 3) & 7);
  if (byte >= bm.bytes.length) return 0;
  return (bm.bytes[byte]! >>> (i & 7)) & 1;
}

/**
 * Every key of the set, forwards (domain order), in BFS order of their ends.
 * Throws SuccinctError when the arrays do not describe a trie.
 */
export function succinctKeys(leaves: Bitmap, labelBitmap: Bitmap, labels: Uint8Array, maxKeys: number): string[] {
  if (labels.length > MAX_LABELS) throw new SuccinctError(`${labels.length} labels (more than ${MAX_LABELS})`);
  const totalBits = labelBitmap.bytes.length * 8;
  // Every edge has a label, so there are at most labels.length + 1 nodes.
  const maxNodes = labels.length + 1;
  const parent = new Int32Array(maxNodes);
  const label = new Uint8Array(maxNodes);
  const depth = new Uint16Array(maxNodes);
  parent[0] = -1;
  let node = 0; // the node whose children the bitmap is listing
  let edges = 0; // 0 bits seen = nodes created besides the root
  let i = 0;
  // Stop once every node created has had its list closed: bits after that are padding.
  while (node <= edges) {
    if (i >= totalBits) throw new SuccinctError(`label bitmap ends inside node ${node} of ${edges + 1}`);
    if (bit(labelBitmap, i) === 0) {
      if (edges >= labels.length) throw new SuccinctError(`label bitmap has more edges than the ${labels.length} labels`);
      edges++;
      parent[edges] = node;
      label[edges] = labels[edges - 1]!;
      const d = depth[node]! + 1;
      if (d > MAX_KEY_BYTES) throw new SuccinctError(`a key is longer than ${MAX_KEY_BYTES} bytes`);
      depth[edges] = d;
    } else {
      node++;
    }
    i++;
  }
  const nodes = edges + 1;
  let count = 0;
  let total = 0;
  for (let n = 0; n < nodes; n++) {
    if (bit(leaves, n) === 0) continue;
    count++;
    total += depth[n]!;
    if (count > maxKeys) throw new SuccinctError(`more than ${maxKeys} keys`);
    if (total > MAX_TOTAL_KEY_BYTES) throw new SuccinctError(`keys add up to more than ${MAX_TOTAL_KEY_BYTES} bytes`);
  }
  const keys: string[] = [];
  const buf = Buffer.alloc(MAX_KEY_BYTES);
  for (let n = 0; n < nodes; n++) {
    if (bit(leaves, n) === 0) continue;
    // Walking up yields the stored key backwards, which is the domain forwards.
    let len = 0;
    let ascii = true;
    for (let m = n; m > 0; m = parent[m]!) {
      const c = label[m]!;
      if (c >= 0x80) ascii = false;
      buf[len++] = c;
    }
    keys.push(ascii ? buf.toString('latin1', 0, len) : unreverseUtf8(buf.subarray(0, len)));
  }
  return keys;
}

const utf8 = new TextDecoder('utf-8');

/**
 * The stored key was reversed rune by rune (Go's reverseDomain); we read it
 * backwards byte by byte, so each multi-byte rune came out mirrored. Undo the
 * byte mirror, decode, and reverse by code point.
 */
function unreverseUtf8(backwards: Uint8Array): string {
  const forwardKey = Uint8Array.from(backwards).reverse();
  return Array.from(utf8.decode(forwardKey)).reverse().join('');
}
