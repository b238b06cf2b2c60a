// `splitwan web passwd [--config PATH]`: reads the dashboard's password from
// standard input (without echo on a terminal, asked twice) and writes its
// scrypt hash into the config file as web.passwordHash. The file is edited
// as a YAML document (comments and layout kept), written beside itself and
// renamed into place with its mode; a running daemon reloads it.
import { chmod, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { parseDocument } from 'yaml';
import { Exit, type Io } from '../cli-io.js';
import { hashPassword, MIN_PASSWORD_LENGTH } from '../web/password.js';

export interface PasswordInput {
  isTTY?: boolean;
  setRawMode?(raw: boolean): unknown;
  on(ev: 'data', fn: (d: Buffer) => void): unknown;
  on(ev: 'end', fn: () => void): unknown;
  removeAllListeners(ev?: string): unknown;
  resume(): unknown;
  pause(): unknown;
}

/** One line typed on a terminal, echoing nothing; null on Ctrl-C or Ctrl-D. */
function readHidden(input: PasswordInput, prompt: string, io: Io): Promise<string | null> {
  io.err(prompt);
  return new Promise((resolve) => {
    let text = '';
    input.setRawMode?.(true);
    input.resume();
    const done = (v: string | null): void => {
      input.setRawMode?.(false);
      input.removeAllListeners('data');
      input.pause();
      io.err('\n');
      resolve(v);
    };
    input.on('data', (d: Buffer) => {
      for (const ch of d.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return done(text);
        if (ch === '\u0003' || ch === '\u0004') return done(null);
        if (ch === '\u007f' || ch === '\b') text = [...text].slice(0, -1).join('');
        else if (ch >= ' ') text += ch;
      }
    });
  });
}

/** Everything on a pipe; the password is its first line. */
function readPiped(input: PasswordInput): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    input.on('data', (d: Buffer) => chunks.push(d));
    input.on('end', () => resolve(Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? ''));
    input.resume();
  });
}

export async function webPasswdCommand(o: { config: string }, io: Io, input: PasswordInput = process.stdin): Promise<number> {
  let text: string;
  try {
    text = await readFile(o.config, 'utf8');
  } catch (e) {
    io.err(`splitwan web passwd: cannot read ${o.config}: ${(e as Error).message}\n`);
    return Exit.CONFIG;
  }
  const doc = parseDocument(text);
  if (doc.errors.length > 0) {
    io.err(`splitwan web passwd: ${o.config} is not valid YAML (${doc.errors[0]!.message.split('\n')[0]}); fix it first (splitwan check)\n`);
    return Exit.CONFIG;
  }
  let password: string | null;
  if (input.isTTY) {
    password = await readHidden(input, 'dashboard password: ', io);
    if (password !== null && password.length >= MIN_PASSWORD_LENGTH) {
      const again = await readHidden(input, 'again: ', io);
      if (again !== password) {
        io.err('splitwan web passwd: the two passwords differ; nothing changed\n');
        return Exit.USAGE;
      }
    }
  } else password = await readPiped(input);
  if (password === null) return Exit.USAGE;
  if (password.length < MIN_PASSWORD_LENGTH) {
    io.err(`splitwan web passwd: the password needs at least ${MIN_PASSWORD_LENGTH} characters; nothing changed\n`);
    return Exit.USAGE;
  }
  const hash = await hashPassword(password);
  doc.setIn(['web', 'passwordHash'], hash);
  const mode = (await stat(o.config)).mode & 0o7777;
  const tmp = `${o.config}.splitwan-${process.pid}.tmp`;
  try {
    await writeFile(tmp, String(doc), { mode, flag: 'wx' });
    await chmod(tmp, mode);
    await rename(tmp, o.config);
  } catch (e) {
    await rm(tmp, { force: true });
    io.err(`splitwan web passwd: cannot write ${o.config}: ${(e as Error).message}\n`);
    return Exit.CONFIG;
  }
  io.out(`web.passwordHash set in ${o.config} (a running daemon reloads it)\n`);
  return Exit.OK;
}
