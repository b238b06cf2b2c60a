// nft commands run in-process through libnftables (the library the `nft`
// binary is built on, as dnsmasq's --nftset uses it), called through koffi
// on libuv's thread pool so the event loop never waits for netlink.
//
// Why not `nft -i`: it keeps every line in a libedit history whose cost
// grows with the session (0.2 ms a command fresh, 1 ms after 100k) and
// writes it to $HOME/.nft.history; replacing the process costs a table load
// (~90 ms with 100k tagged addresses). Measured by `bench dns`.
//
// Commands run one at a time (a context is not thread-safe), in the order
// given, each one transaction; errors come from the context's error buffer
// as `nft` prints them. The library acts in the network namespace of this
// process: the daemon's. When libnftables cannot be loaded, the daemon falls
// back to NftSession (`nft -i`).
import koffi from 'koffi';
import type { Logger } from '../../config/logger.js';
import { NftError, NftSession, type NftExec } from './nft-session-linux.js';

interface Lib {
  ctxNew: koffi.KoffiFunction;
  bufferError: koffi.KoffiFunction;
  bufferOutput: koffi.KoffiFunction;
  getError: koffi.KoffiFunction;
  run: koffi.KoffiFunction;
  free: koffi.KoffiFunction;
}

let loaded: Lib | null | undefined;

/** The library's functions, or null when libnftables.so.1 is not installed. */
function lib(): Lib | null {
  if (loaded !== undefined) return loaded;
  try {
    const l = koffi.load('libnftables.so.1');
    loaded = {
      ctxNew: l.func('void *nft_ctx_new(uint32_t flags)'),
      bufferError: l.func('int nft_ctx_buffer_error(void *ctx)'),
      bufferOutput: l.func('int nft_ctx_buffer_output(void *ctx)'),
      getError: l.func('const char *nft_ctx_get_error_buffer(void *ctx)'),
      run: l.func('int nft_run_cmd_from_buffer(void *ctx, const char *buf)'),
      free: l.func('void nft_ctx_free(void *ctx)'),
    };
  } catch {
    loaded = null;
  }
  return loaded;
}

export function libnftAvailable(): boolean {
  return lib() !== null;
}

/** `Error: …` lines of nft's error text, without the echoed command and caret lines. */
export function nftErrors(text: string): string[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('Error:'))
    .map((l) => l.slice(7));
}

export class LibNft implements NftExec {
  private readonly l: Lib;
  private ctx: unknown;
  private chain: Promise<void> = Promise.resolve();
  private closed = false;
  /** Commands run (for benchmarks and status). */
  commands = 0;

  constructor(private readonly logger: Logger) {
    const l = lib();
    if (l === null) throw new Error('libnftables.so.1 is not installed');
    this.l = l;
    this.ctx = l.ctxNew(0);
    if (!this.ctx) throw new Error('nft_ctx_new failed');
    // Buffered: nothing is printed on the daemon's stdout/stderr; errors are read back.
    l.bufferOutput(this.ctx);
    l.bufferError(this.ctx);
  }

  exec(line: string): Promise<void> {
    if (this.closed) return Promise.reject(new Error('nft session closed'));
    if (line.includes('\n')) return Promise.reject(new TypeError('one line is one transaction: no newlines'));
    const run = this.chain.then(() => this.runOne(line));
    this.chain = run.catch(() => undefined);
    return run;
  }

  private runOne(line: string): Promise<void> {
    if (this.closed) return Promise.reject(new Error('nft session closed'));
    this.commands++;
    return new Promise<void>((resolve, reject) => {
      this.l.run.async(this.ctx, line, (err: unknown, rc: number) => {
        if (err) return reject(err instanceof Error ? err : new Error(String(err)));
        if (rc === 0) return resolve();
        // The error buffer holds this command's messages: commands never overlap.
        const text = String(this.l.getError(this.ctx) ?? '');
        const errs = nftErrors(text);
        reject(new NftError(line, errs.length ? errs : [text.trim() || `failed (${rc})`]));
      });
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    // The context is freed once the command in flight (if any) has returned.
    void this.chain.then(() => {
      this.l.free(this.ctx);
      this.ctx = null;
      this.logger.debug({ commands: this.commands }, 'libnftables context closed');
    });
  }
}

/** The daemon's nft: libnftables in-process, else a persistent `nft -i` (said in the log). */
export function openNft(logger: Logger): NftExec & { close(): void } {
  if (libnftAvailable()) return new LibNft(logger);
  logger.warn({}, 'libnftables.so.1 not found: using nft -i (slower tagging); install libnftables1');
  return new NftSession(logger);
}
