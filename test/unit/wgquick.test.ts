import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ConfigCodes, ConfigError, IssueSink, formatIssue, type ConfigIssue } from '../../config/errors.js';
import { isWireGuardKey, parseWgQuick, redactWgQuick } from '../../config/wgquick.js';

const FIXTURES = new URL('../fixtures/wg/', import.meta.url);
const fixture = (name: string): string => readFileSync(new URL(name, FIXTURES), 'utf8');

// Keys made with crypto.randomBytes(32).toString('base64') when the fixtures were written.
const K = {
  mullvadPriv: 'Ar+V1OVJH+qnXbrsh4gQTR95yTRhIFWuYaIRX5Byr0M=',
  mullvadPub: '0bUYJEUGqj6pZDa0JOB3v3eVK7TewkxyqygePrWLOvM=',
  protonPriv: 'UC2ojIwR1AjnWijrLRzDdzya/sV0XscdPwBcDif6TfA=',
  protonPub: 'hxUiL4Cb3oTMws0R+8YYctORffV9fr043j5fkc0bxQk=',
  vpsPriv: 'i1ASfL+83M/Lj/VbuT69ClUbx5U7btVydXhnEbYjw8A=',
  vpsPub: 'nGToo/P0H6LGxB6xvUAbClFcrLTBF/PxB+DyExGuHoM=',
  vpsPsk: 'Xx1EkD60ICZYTJJrcWdoZGkB0dUIYoCGCn4h/qji1UY=',
  winPriv: 'rOvy7Uqiag5nAgh62fp9sMo0jywG4FnJalhysRiqsZ4=',
  spare: 'SViUQhUGuTuxL9//LkY6j6jhgTuggfCquZCWONg1YKw=',
  brokenPriv: 'P6dRRSds1LYONMqN13SIVSvdmU1hq1syHTnpJ7WzI6w=',
  brokenPsk: 'd9YVmZgee+vgeMKQCv4uDMkric65rMaDtzvMnGm2S+0=',
  brokenPub: 'Jkstpcyzdu0rJ/d4NJ/lj9Px1V7kUrI+yp2rYQLHgi0=',
  brokenPriv2: 'e7M6BpGs3QyDNE4FNea1pPn/Zdgw3lYHmriM1LuVYLw=',
  serverPub: 'fwwSNuEwtp+YJgh46FmcEWYVjd3VaYCFxc/NKO8Oj0E=',
} as const;

/** Every private and preshared key any test feeds in. */
const SECRETS = [K.mullvadPriv, K.protonPriv, K.vpsPriv, K.vpsPsk, K.winPriv, K.brokenPriv, K.brokenPsk, K.brokenPriv2];

function parse(text: string, file = '/etc/splitwan/wg0.conf') {
  const sink = new IssueSink();
  const result = parseWgQuick(text, file, sink);
  return { result, issues: sink.issues };
}

/** An issue without its message: what the exact-position assertions compare. */
function where(i: ConfigIssue) {
  return { code: i.code, severity: i.severity, line: i.pos.line, col: i.pos.col, keyPath: i.keyPath };
}

const err = (code: string, line: number, col: number, keyPath: string) => ({
  code,
  severity: 'error',
  line,
  col,
  keyPath,
});
const warn = (line: number, col: number, keyPath: string) => ({
  code: ConfigCodes.WGQUICK,
  severity: 'warning',
  line,
  col,
  keyPath,
});

/** A minimal valid file, for cases that vary one line. */
function minimal(ifaceExtra = '', peerExtra = ''): string {
  return [
    '[Interface]', // 1
    `PrivateKey = ${K.vpsPriv}`, // 2
    'Address = 10.8.0.2/32', // 3
    ifaceExtra, // 4...
    '[Peer]',
    `PublicKey = ${K.vpsPub}`,
    'AllowedIPs = 0.0.0.0/0',
    'Endpoint = 203.0.113.7:51820',
    peerExtra, // line 9 when ifaceExtra is one line
    '',
  ].join('\n');
}

describe('parseWgQuick: provider files', () => {
  it('reads a Mullvad file', () => {
    const file = '/etc/splitwan/mullvad.conf';
    const { result, issues } = parse(fixture('mullvad-se-got-wg-001.conf'), file);
    expect(issues).toEqual([]);
    expect(result).toStrictEqual({
      privateKey: K.mullvadPriv,
      addresses: ['10.66.23.118/32', 'fc00:bbbb:bbbb:bb01::3:1775/128'],
      dns: ['10.64.0.1'],
      peers: [
        {
          publicKey: K.mullvadPub,
          allowedIPs: ['0.0.0.0/0', '::/0'],
          endpoint: { host: '185.213.154.68', port: 51820 },
        },
      ],
      source: { file, line: 1, col: 1 },
    });
  });

  it('reads a Proton file with its comment block and keepalive', () => {
    const { result, issues } = parse(fixture('proton-nl-free-142.conf'), 'proton.conf');
    expect(issues).toEqual([]);
    expect(result).toStrictEqual({
      privateKey: K.protonPriv,
      addresses: ['10.2.0.2/32'],
      dns: ['10.2.0.1'],
      peers: [
        {
          publicKey: K.protonPub,
          allowedIPs: ['0.0.0.0/0', '::/0'],
          endpoint: { host: '185.107.56.100', port: 51820 },
          persistentKeepalive: 25,
        },
      ],
      source: { file: 'proton.conf', line: 1, col: 1 },
    });
  });

  it('reads a self-hosted file: PresharedKey, MTU, host name endpoint, repeated keys, two peers', () => {
    const { result, issues } = parse(fixture('vps-fra.conf'), 'vps.conf');
    expect(result).toStrictEqual({
      privateKey: K.vpsPriv,
      // Interface addresses keep their host bits.
      addresses: ['10.8.0.2/24', 'fd86:ea04:1115::2/64'],
      dns: ['10.8.0.1', 'fd86:ea04:1115::1'],
      mtu: 1420,
      peers: [
        {
          publicKey: K.vpsPub,
          presharedKey: K.vpsPsk,
          endpoint: { host: 'vpn.example.net', port: 51820 },
          allowedIPs: ['0.0.0.0/0', '::/0'],
          persistentKeepalive: 25,
        },
        {
          publicKey: K.spare,
          endpoint: { host: '2001:db8:1::10', port: 51820 },
          // AllowedIPs are networks: host bits cleared, as wg does.
          allowedIPs: ['10.8.0.0/24'],
        },
      ],
      source: { file: 'vps.conf', line: 2, col: 1 },
    });
    expect(issues.map(where)).toEqual([
      warn(6, 36, 'Interface.DNS'),
      warn(9, 1, 'Interface.Table'),
      warn(10, 1, 'Interface.PostUp'),
      warn(11, 1, 'Interface.PostUp'),
      warn(12, 1, 'Interface.PreDown'),
      warn(13, 1, 'Interface.PostDown'),
    ]);
    expect(issues[0]!.message).toBe(
      '"home.arpa" is a search domain; splitwan ignores those and uses only the resolver addresses',
    );
    expect(issues[1]!.message).toBe('is ignored: splitwan manages routing itself and picks its own routing tables');
    expect(issues[2]!.message).toBe('is ignored: splitwan manages routing itself and never runs hook commands');
  });

  it('never runs hook commands', () => {
    const marker = join(tmpdir(), `splitwan-wgquick-hook-${process.pid}`);
    const hooks = ['PreUp', 'PostUp', 'PreDown', 'PostDown'].map((k) => `${k} = touch ${marker}`).join('\n');
    const { result, issues } = parse(minimal(hooks));
    expect(result).not.toBeNull();
    expect(issues.map((i) => i.severity)).toEqual(['warning', 'warning', 'warning', 'warning']);
    expect(existsSync(marker)).toBe(false);
    // And it could not: the parser imports nothing that runs processes or touches files.
    const source = readFileSync(new URL('../../config/wgquick.ts', import.meta.url), 'utf8');
    const imports = [...source.matchAll(/^import .* from '([^']+)';$/gm)].map((m) => m[1]);
    expect(imports).toEqual(['./errors.js', './domain.js', '../lib/ip.js', './types.js']);
  });

  it('reads a Windows file with a BOM and CRLF line endings like the same file in LF', () => {
    const text = fixture('windows-crlf-bom.conf');
    expect(text.startsWith('\uFEFF')).toBe(true);
    expect(text).toContain('\r\n');
    const { result, issues } = parse(text, 'win.conf');
    expect(issues).toEqual([]);
    expect(result).toStrictEqual({
      privateKey: K.winPriv,
      addresses: ['10.14.0.2/16'],
      dns: ['162.252.172.57', '149.154.159.92'],
      peers: [
        {
          publicKey: K.spare,
          allowedIPs: ['0.0.0.0/0'],
          endpoint: { host: 'us-nyc.prod.surfshark.com', port: 51820 },
        },
      ],
      source: { file: 'win.conf', line: 1, col: 1 },
    });
    expect(parse(text.slice(1).replace(/\r\n/g, '\n'), 'win.conf').result).toStrictEqual(result);
  });

  it('counts columns after the BOM and lines across CRLF', () => {
    const text = `\uFEFFPrivateKey = ${K.vpsPriv}\r\n[Interface]\r\nMTU = 12\r\n`;
    const { result, issues } = parse(text);
    expect(result).toBeNull();
    expect(issues.map(where)).toEqual([
      err(ConfigCodes.WGQUICK, 1, 1, ''),
      err(ConfigCodes.WGQUICK, 3, 7, 'Interface.MTU'),
      err(ConfigCodes.WGQUICK, 2, 1, 'Interface.PrivateKey'),
      err(ConfigCodes.WGQUICK, 2, 1, 'Peer'),
    ]);
  });
});

describe('parseWgQuick: broken files', () => {
  it('reports every mistake with its code, line, column and key path', () => {
    const { result, issues } = parse(fixture('broken-everything.conf'), 'broken.conf');
    expect(result).toBeNull();
    expect(issues.map(where)).toEqual([
      err(ConfigCodes.WGQUICK, 2, 1, ''), // Address before any section
      err(ConfigCodes.WGQUICK, 5, 1, 'Interface.PrivateKey'), // set twice
      err(ConfigCodes.ADDRESS, 6, 11, 'Interface.Address'), // 10.9.0.300
      err(ConfigCodes.ADDRESS, 6, 26, 'Interface.Address'), // /33
      err(ConfigCodes.ADDRESS, 7, 16, 'Interface.DNS'), // 10.9.0.256
      warn(7, 29, 'Interface.DNS'), // corp.example is a search domain
      err(ConfigCodes.WGQUICK, 8, 7, 'Interface.MTU'),
      warn(9, 1, 'Interface.PostUp'),
      err(ConfigCodes.WGQUICK, 10, 1, 'Interface.Adress'),
      err(ConfigCodes.WGQUICK, 11, 1, 'Interface.Endpoint'), // a [Peer] key
      err(ConfigCodes.WGQUICK, 12, 1, 'Interface'), // no "="
      err(ConfigCodes.KEY, 15, 13, 'Peer[0].PublicKey'), // two characters short
      err(ConfigCodes.KEY, 16, 16, 'Peer[0].PresharedKey'), // non-canonical last character
      err(ConfigCodes.ADDRESS, 17, 12, 'Peer[0].Endpoint'), // no port
      err(ConfigCodes.ADDRESS, 18, 25, 'Peer[0].AllowedIPs'), // empty item
      err(ConfigCodes.ADDRESS, 18, 27, 'Peer[0].AllowedIPs'), // /33
      err(ConfigCodes.WGQUICK, 19, 23, 'Peer[0].PersistentKeepalive'),
      err(ConfigCodes.ADDRESS, 23, 12, 'Peer[1].Endpoint'), // no "]"
      err(ConfigCodes.WGQUICK, 25, 1, 'Peer[1].PublicKeys'),
      err(ConfigCodes.WGQUICK, 27, 1, ''), // [Peers]
      err(ConfigCodes.WGQUICK, 29, 1, 'Interface'), // a second [Interface]
      err(ConfigCodes.WGQUICK, 21, 1, 'Peer[1].PublicKey'), // missing
    ]);
    const messages = issues.map((i) => i.message);
    expect(messages).toEqual([
      'is outside any section; settings go under [Interface] or [Peer]',
      'is set twice (first on line 4)',
      '"10.9.0.300/32" is not an IP address or address/prefix',
      '"10.9.0.3/33" has a bad prefix length (0-32)',
      '"10.9.0.256" is not an IP address',
      '"corp.example" is a search domain; splitwan ignores those and uses only the resolver addresses',
      '"70000" is not an MTU (a whole number, 576-9000)',
      'is ignored: splitwan manages routing itself and never runs hook commands',
      'unknown key "Adress" in [Interface] (did you mean Address?)',
      'Endpoint belongs in a [Peer] section, not [Interface]',
      'expected "Key = Value"',
      'PublicKey is not a WireGuard key (44 characters of base64; this one has 42 characters)',
      'PresharedKey is not a WireGuard key (the character before the = must be one of AEIMQUYcgkosw048, so that it decodes to exactly 32 bytes)',
      '"vpn.example.net" has no port; write host:port',
      'has an empty item in the list',
      '"10.0.0.0/33" is not a CIDR',
      '"sometimes" is not a keepalive interval (seconds, 1-65535, or off)',
      'is missing "]" after the IPv6 address',
      'unknown key "PublicKeys" in [Peer] (did you mean PublicKey?)',
      'unknown section [Peers]; a wg-quick file has [Interface] and [Peer] (did you mean [Peer]?)',
      'a second [Interface] section (the first is on line 3); a file has exactly one',
      'is missing',
    ]);
  });

  it('reports a server-side peer pasted without an [Interface]', () => {
    const { result, issues } = parse(fixture('broken-peer-only.conf'));
    expect(result).toBeNull();
    expect(issues.map(where)).toEqual([err(ConfigCodes.WGQUICK, 1, 1, 'Interface')]);
    expect(issues[0]!.message).toBe('no [Interface] section');
  });

  it('reports an empty file once for each missing section', () => {
    const { result, issues } = parse('');
    expect(result).toBeNull();
    expect(issues.map(where)).toEqual([err(ConfigCodes.WGQUICK, 1, 1, 'Interface'), err(ConfigCodes.WGQUICK, 1, 1, 'Peer')]);
  });

  it('reports a missing PrivateKey at the [Interface] header', () => {
    const text = `# gw\n[Interface]\nAddress = 10.0.0.2/32\n[Peer]\nPublicKey = ${K.vpsPub}\n`;
    const { result, issues } = parse(text);
    expect(result).toBeNull();
    expect(issues.map(where)).toEqual([err(ConfigCodes.WGQUICK, 2, 1, 'Interface.PrivateKey')]);
    expect(issues[0]!.message).toBe('is missing');
  });

  it('reports an empty PrivateKey once, at the key', () => {
    const text = `[Interface]\n  PrivateKey =   # filled in by the installer\n[Peer]\nPublicKey = ${K.vpsPub}\n`;
    const { issues } = parse(text);
    expect(issues.map(where)).toEqual([err(ConfigCodes.WGQUICK, 2, 3, 'Interface.PrivateKey')]);
    expect(issues[0]!.message).toBe('has no value');
  });

  it('reports a file without peers', () => {
    const text = `\n[Interface]\nPrivateKey = ${K.vpsPriv}\n`;
    const { result, issues } = parse(text);
    expect(result).toBeNull();
    expect(issues.map(where)).toEqual([err(ConfigCodes.WGQUICK, 2, 1, 'Peer')]);
  });

  it('reports a peer without PublicKey at its header and a PublicKey used twice', () => {
    const text = minimal('', `[Peer]\nAllowedIPs = 10.1.0.0/16\n[Peer]\nPublicKey = ${K.vpsPub}\n`);
    const { issues } = parse(text);
    expect(issues.map(where)).toEqual([
      err(ConfigCodes.WGQUICK, 9, 1, 'Peer[1].PublicKey'),
      err(ConfigCodes.WGQUICK, 11, 1, 'Peer[2].PublicKey'),
    ]);
    expect(issues[1]!.message).toBe('is the same as the PublicKey of Peer[0]');
  });

  it('reports a file saved as UTF-16', () => {
    const utf16 = Buffer.from(`\uFEFF[Interface]\r\nPrivateKey = ${K.vpsPriv}\r\n`, 'utf16le').toString('utf8');
    const { result, issues } = parse(utf16);
    expect(result).toBeNull();
    expect(issues.map(where)).toEqual([err(ConfigCodes.FILE, 1, 1, '')]);
  });

  it.each([
    ['[Peer] # fine', null],
    ['[ peer ]', null],
    ['[PEER]', null],
    ['[Peer', 'section header is missing "]"'],
    ['[Peer] extra', 'unexpected text after the section header'],
    ['[Interfaces]', 'unknown section [Interfaces]; a wg-quick file has [Interface] and [Peer] (did you mean [Interface]?)'],
    ['[WireGuard Peer Settings]', 'unknown section [WireGuard Peer Settings]; a wg-quick file has [Interface] and [Peer]'],
  ])('section header %j', (header, message) => {
    const text = `[Interface]\nPrivateKey = ${K.vpsPriv}\n${header}\nPublicKey = ${K.vpsPub}\n[Peer]\nPublicKey = ${K.mullvadPub}\n`;
    const { issues } = parse(text);
    if (message === null) expect(issues).toEqual([]);
    else {
      expect(issues.map(where)).toEqual([err(ConfigCodes.WGQUICK, 3, 1, '')]);
      expect(issues[0]!.message).toBe(message);
    }
  });

  it('suggests nothing for a key far from any known one', () => {
    const { issues } = parse(minimal('Colour = blue'));
    expect(issues.map(where)).toEqual([err(ConfigCodes.WGQUICK, 4, 1, 'Interface.Colour')]);
    expect(issues[0]!.message).toBe('unknown key "Colour" in [Interface]');
  });

  it.each([
    [`${K.vpsPriv}`, 'a WireGuard key on a line of its own; write "PrivateKey = ..." or, under [Peer], "PublicKey = ..."'],
    [`PrivateKey: ${K.vpsPriv}`, 'expected "PrivateKey = value"'],
    [`presharedkey ${K.vpsPsk}`, 'expected "PresharedKey = value"'],
  ])('explains the line %j without showing the key', (line, message) => {
    const { issues } = parse(minimal(line));
    expect(issues.map(where)).toEqual([err(ConfigCodes.WGQUICK, 4, 1, 'Interface')]);
    expect(issues[0]!.message).toBe(message);
  });

  it('says where an [Interface] key belongs when it is under [Peer]', () => {
    const { issues } = parse(minimal('', 'dns = 10.0.0.1'));
    expect(issues.map(where)).toEqual([err(ConfigCodes.WGQUICK, 9, 1, 'Peer[0].dns')]);
    expect(issues[0]!.message).toBe('DNS belongs in the [Interface] section, not [Peer]');
  });

  it('keeps collecting when the sink already holds other files’ errors, and judges only this file', () => {
    const sink = new IssueSink();
    sink.error(ConfigCodes.YAML, { file: 'splitwan.yaml', line: 3, col: 1 }, '', 'bad YAML');
    expect(parseWgQuick(minimal(), 'wg0.conf', sink)).not.toBeNull();
    expect(sink.issues).toHaveLength(1);
  });
});

describe('parseWgQuick: values', () => {
  const one = (ifaceExtra: string, peerExtra = '') => parse(minimal(ifaceExtra, peerExtra));

  it('gives an Address without prefix a /32 or /128 and normalises IPv6', () => {
    const { result } = one('Address = 10.8.0.3, fc00:0:0::2\nAddress=fd00::1/64');
    expect(result?.addresses).toEqual(['10.8.0.2/32', '10.8.0.3/32', 'fc00::2/128', 'fd00::1/64']);
  });

  it('splits Address and DNS on commas or spaces and skips empty items, like wg-quick', () => {
    const { result, issues } = one('Address = , 10.8.0.3,\nAddress = 10.8.0.4 10.8.0.5\nDNS =\nDNS = 1.1.1.1,,2606:4700:4700::1111');
    expect(issues).toEqual([]);
    expect(result?.addresses).toEqual(['10.8.0.2/32', '10.8.0.3/32', '10.8.0.4/32', '10.8.0.5/32']);
    expect(result?.dns).toEqual(['1.1.1.1', '2606:4700:4700::1111']);
  });

  it('points at the bad item of a space-separated Address', () => {
    const { issues } = one('Address = 10.8.0.3  10.8.0.999');
    expect(issues.map(where)).toEqual([err(ConfigCodes.ADDRESS, 4, 21, 'Interface.Address')]);
  });

  it('reads AllowedIPs on commas only, as wg does', () => {
    const { issues } = one('', 'AllowedIPs = 10.1.0.0/16 10.2.0.0/16');
    expect(issues.map(where)).toEqual([err(ConfigCodes.ADDRESS, 9, 14, 'Peer[0].AllowedIPs')]);
  });

  it('refuses a zone on an interface address or an AllowedIPs entry', () => {
    const { issues } = one('Address = fe80::2%eth0/64', 'AllowedIPs = fe80::%eth0/64');
    expect(issues.map(where)).toEqual([
      err(ConfigCodes.ADDRESS, 4, 11, 'Interface.Address'),
      err(ConfigCodes.ADDRESS, 9, 14, 'Peer[0].AllowedIPs'),
    ]);
  });

  it('takes an empty AllowedIPs as none, as wg does', () => {
    const text = `[Interface]\nPrivateKey = ${K.vpsPriv}\n[Peer]\nPublicKey = ${K.vpsPub}\nAllowedIPs =\n`;
    const { result, issues } = parse(text);
    expect(issues).toEqual([]);
    expect(result?.peers[0]).toStrictEqual({ publicKey: K.vpsPub, allowedIPs: [] });
  });

  it.each([
    ['576', 576],
    ['1420', 1420],
    ['9000', 9000],
    ['575', null],
    ['9001', null],
    ['1420.5', null],
    ['-1', null],
    ['auto', null],
  ])('MTU = %s', (value, expected) => {
    const { result, issues } = one(`MTU = ${value}`);
    if (expected === null) {
      expect(result).toBeNull();
      expect(issues.map(where)).toEqual([err(ConfigCodes.WGQUICK, 4, 7, 'Interface.MTU')]);
    } else {
      expect(issues).toEqual([]);
      expect(result?.mtu).toBe(expected);
    }
  });

  it('warns when the MTU is too small for the IPv6 addresses', () => {
    const { result, issues } = one('Address = fd00::2/128\n  MTU = 1279');
    expect(result?.mtu).toBe(1279);
    expect(issues.map(where)).toEqual([warn(5, 9, 'Interface.MTU')]);
    expect(issues[0]!.message).toBe('is below 1280, so Linux will drop the IPv6 addresses of this tunnel');
    expect(one('MTU = 1279').issues).toEqual([]);
  });

  it.each([
    ['25', 25],
    ['65535', 65535],
    ['0', undefined],
    ['off', undefined],
    ['OFF', undefined],
  ])('PersistentKeepalive = %s', (value, expected) => {
    const { result, issues } = one('', `PersistentKeepalive = ${value}`);
    expect(issues).toEqual([]);
    expect(result?.peers[0]?.persistentKeepalive).toBe(expected);
    expect(result?.peers[0] && 'persistentKeepalive' in result.peers[0]).toBe(expected !== undefined);
  });

  it.each(['65536', '-5', '25s', 'on'])('PersistentKeepalive = %s is an error', (value) => {
    const { issues } = one('', `PersistentKeepalive = ${value}`);
    expect(issues.map(where)).toEqual([err(ConfigCodes.WGQUICK, 9, 23, 'Peer[0].PersistentKeepalive')]);
  });

  it.each([
    ['vpn.example.net:51820', { host: 'vpn.example.net', port: 51820 }],
    ['VPN.Example.NET.:443', { host: 'VPN.Example.NET.', port: 443 }],
    ['[2001:db8::7]:51820', { host: '2001:db8::7', port: 51820 }],
    ['[fe80::1%eth0]:51820', { host: 'fe80::1%eth0', port: 51820 }],
    ['198.51.100.7:1', { host: '198.51.100.7', port: 1 }],
    ['198.51.100.7 : 65535', { host: '198.51.100.7', port: 65535 }],
  ])('Endpoint = %s', (value, expected) => {
    // minimal() already sets an Endpoint; replace it rather than set it twice.
    const text = minimal().replace('Endpoint = 203.0.113.7:51820', `Endpoint = ${value}`);
    const parsed = parse(text);
    expect(parsed.issues).toEqual([]);
    expect(parsed.result?.peers[0]?.endpoint).toStrictEqual(expected);
  });

  it.each([
    ['vpn.example.net', '"vpn.example.net" has no port; write host:port'],
    ['2001:db8::7:51820', 'an IPv6 endpoint is written [address]:port'],
    ['[2001:db8::7]', 'has no port; write [address]:port'],
    ['[2001:db8::7]51820', 'has no port; write [address]:port'],
    ['[vpn.example.net]:51820', '"vpn.example.net" in [ ] is not an IPv6 address'],
    ['185.65.135.300:51820', '"185.65.135.300" is not an IPv4 address'],
    ['vpn..example.net:51820', '"vpn..example.net" is not an IP address or host name'],
    ['vpn example.net:51820', '"vpn example.net" is not an IP address or host name'],
    [':51820', 'has no host before ":port"'],
    ['vpn.example.net:0', 'has a bad port "0" (1-65535)'],
    ['vpn.example.net:65536', 'has a bad port "65536" (1-65535)'],
    ['vpn.example.net:wg', 'has a bad port "wg" (1-65535)'],
  ])('Endpoint = %s is an error', (value, message) => {
    const text = minimal().replace('Endpoint = 203.0.113.7:51820', `Endpoint = ${value}`);
    const { result, issues } = parse(text);
    expect(result).toBeNull();
    expect(issues.map(where)).toEqual([err(ConfigCodes.ADDRESS, 8, 12, 'Peer[0].Endpoint')]);
    expect(issues[0]!.message).toBe(message);
  });

  it('reports a duplicated scalar key but lets lists and ignored keys repeat', () => {
    const { issues } = one('Table = off\nTable = 1234\nListenPort = 1\nListenPort = 2', 'Endpoint = 203.0.113.8:51820');
    expect(issues.map(where)).toEqual([
      warn(4, 1, 'Interface.Table'),
      warn(5, 1, 'Interface.Table'),
      err(ConfigCodes.WGQUICK, 12, 1, 'Peer[0].Endpoint'),
    ]);
    expect(issues[2]!.message).toBe('is set twice (first on line 11)');
  });

  it('accepts trailing comments, tabs and lower-case keys', () => {
    const text = [
      '[interface]',
      `\tprivatekey\t=\t${K.vpsPriv}   # laptop`,
      'mtu=1380#small',
      '[peer]',
      `PUBLICKEY = ${K.vpsPub}#server`,
      'allowedips = 0.0.0.0/0 , ::/0 # all',
    ].join('\n');
    const { result, issues } = parse(text, 'x.conf');
    expect(issues).toEqual([]);
    expect(result).toStrictEqual({
      privateKey: K.vpsPriv,
      addresses: [],
      dns: [],
      mtu: 1380,
      peers: [{ publicKey: K.vpsPub, allowedIPs: ['0.0.0.0/0', '::/0'] }],
      source: { file: 'x.conf', line: 1, col: 1 },
    });
  });

  it('reports a bad PrivateKey at its value without showing it', () => {
    const hex = Buffer.from(K.vpsPriv, 'base64').toString('hex');
    const { result, issues } = parse(minimal().replace(K.vpsPriv, hex));
    expect(result).toBeNull();
    expect(issues.map(where)).toEqual([err(ConfigCodes.KEY, 2, 14, 'Interface.PrivateKey')]);
    expect(issues[0]!.message).toBe(
      'PrivateKey is not a WireGuard key (44 characters of base64; this one has 64 characters)',
    );
  });
});

describe('secrets never reach a message', () => {
  const [priv, psk] = [K.brokenPriv, K.brokenPsk];
  /** Every way a secret can sit in a broken file. */
  const brokenTexts: string[] = [
    fixture('broken-everything.conf'),
    fixture('broken-peer-only.conf'),
    `PrivateKey = ${priv}\n`, // outside any section
    `[Interface]\nPrivateKey = ${priv}\nPrivateKey = ${priv}\n`, // duplicate
    `[Interface]\nPrivateKey = ${priv.slice(0, -1)}\n`, // truncated
    `[Interface]\nPrivateKey = ${priv}x\n`, // one character too many
    `[Interface]\nPrivateKey = ${priv.slice(0, 22)} ${priv.slice(22)}\n`, // split by a space
    `[Interface]\nPrivateKey = "${priv}"\n`, // quoted
    `[Interface]\nPrivateKey = ${Buffer.from(priv, 'base64').toString('hex')}\n`, // hex
    `[Interface]\nPrivateKey = ${Buffer.from(priv, 'base64').toString('base64url')}\n`, // URL alphabet
    `[Interface]\n${priv}\n`, // pasted alone: reads as key "<secret>" with no value
    `[Interface]\n${priv.slice(0, -1)}\n`, // pasted alone without "="
    `[Interface]\n${priv} = 1\n`,
    `[Interface]\nPrivKey = ${priv}\n`, // misspelt key
    `[Interface]\nPrivateKey: ${priv}\n`, // YAML habit
    `[Interface]\nPrivateKey ${priv}\n`,
    `[Peer]\nPrivateKey = ${priv}\n`, // wrong section
    `[Interface]\nPrivateKey = ${priv}\n[Peer]\nPublicKey = ${priv}\nPresharedKey = ${psk.slice(1)}\n`,
    `[Interface]\nPrivateKey = ${priv}\nAddress = ${priv}\nDNS = ${priv}, ${psk}\nMTU = ${priv}\n`,
    `[Interface]\nPrivateKey = ${priv}\nPostUp = wg set %i private-key <(echo ${priv})\nTable = ${psk}\n`,
    `[Interface]\nPrivateKey = ${priv}\n[Peer]\nEndpoint = ${psk}\nAllowedIPs = ${psk}\nPersistentKeepalive = ${psk}\n`,
    `[Interface]\nPrivateKey = ${priv}\n[Peer]\nEndpoint = ${psk}:51820\n`,
    `[Interface]\nPrivateKey = ${priv}\n[Peer]\nEndpoint = vpn.example.net:${psk}\n`,
    `[Interface]\nPrivateKey = ${priv}\n[Peer]\nEndpoint = [${psk}]:51820\n`,
    `[Interface]\nPrivateKey = ${priv}\n[Peer]\nEndpoint = ${psk.replace(/[+/]/g, '.')}:51820\n`,
    `[Interface]\nPrivateKey = ${priv}\n[Peer]\nPresharedKey = ${psk}\nPresharedKey = ${psk}\nPublicKey = x\n`,
    `[${priv}]\nPrivateKey = ${priv}\n`,
    `[Interface]\nPrivateKey = ${priv}\n[Peer] ${psk}\n`,
    Buffer.from(`[Interface]\r\nPrivateKey = ${priv}\r\n`, 'utf16le').toString('utf8'),
  ];

  /** Any 12 characters in a row of any secret would be too many. */
  function leaks(text: string): string | undefined {
    for (const s of [...SECRETS, Buffer.from(K.brokenPriv, 'base64').toString('hex')]) {
      for (let i = 0; i + 12 <= s.length; i++) {
        if (text.includes(s.slice(i, i + 12))) return s.slice(i, i + 12);
      }
    }
    return undefined;
  }

  it.each(brokenTexts.map((t, i) => [i, t] as const))('broken file #%i', (_i, text) => {
    const { result, issues } = parse(text);
    expect(result).toBeNull();
    expect(issues.some((i) => i.severity === 'error')).toBe(true);
    for (const issue of issues) {
      expect(leaks(issue.message)).toBeUndefined();
      expect(leaks(issue.keyPath)).toBeUndefined();
      expect(leaks(formatIssue(issue))).toBeUndefined();
    }
    // What a loader would throw.
    const thrown = new ConfigError(issues);
    expect(leaks(thrown.message)).toBeUndefined();
    expect(leaks(String(thrown.stack))).toBeUndefined();
  });

  it('holds for files made of any mix of lines', () => {
    const line = fc.constantFrom(
      '[Interface]',
      '[Peer]',
      `PrivateKey = ${priv}`,
      `PrivateKey = ${priv.slice(3)}`,
      `PresharedKey = ${psk}`,
      `PresharedKey = ${psk}==`,
      `PublicKey = ${K.vpsPub}`,
      `${priv}`,
      `Endpoint = ${psk}:1`,
      `Address = ${priv}`,
      `DNS = ${psk}`,
      `AllowedIPs = ${priv}/32`,
      `MTU = ${psk}`,
      `PersistentKeepalive = ${psk}`,
      `Foo${priv}`,
      `[${psk}`,
      '',
      '# comment',
    );
    fc.assert(
      fc.property(fc.array(line, { maxLength: 12 }), fc.constantFrom('\n', '\r\n'), (lines, eol) => {
        const sink = new IssueSink();
        parseWgQuick(lines.join(eol), 'p.conf', sink);
        return sink.issues.every((i) => leaks(formatIssue(i)) === undefined);
      }),
      { numRuns: 500 },
    );
  });

  it('never throws on arbitrary text', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (text) => {
        parseWgQuick(text, 'p.conf', new IssueSink());
      }),
    );
  });
});

describe('isWireGuardKey', () => {
  it('accepts every 32-byte key', () => {
    for (let i = 0; i < 500; i++) expect(isWireGuardKey(randomBytes(32).toString('base64'))).toBe(true);
    expect(isWireGuardKey(Buffer.alloc(32).toString('base64'))).toBe(true);
    expect(isWireGuardKey(Buffer.alloc(32, 0xff).toString('base64'))).toBe(true);
  });

  it.each([
    ['31 bytes', randomBytes(31).toString('base64')],
    ['33 bytes', randomBytes(33).toString('base64')],
    ['no padding', K.vpsPub.slice(0, -1)],
    ['a non-canonical last character', `${K.vpsPub.slice(0, 42)}B=`],
    ['the URL alphabet', `${'-_'.repeat(21)}A=`],
    ['surrounding space', ` ${K.vpsPub}`],
    ['hex', randomBytes(32).toString('hex')],
    ['empty', ''],
  ])('rejects %s', (_what, s) => {
    expect(isWireGuardKey(s)).toBe(false);
  });

  it('agrees with Buffer on length but not on sloppy encodings', () => {
    const sloppy = `${K.vpsPub.slice(0, 42)}B=`;
    expect(Buffer.from(sloppy, 'base64')).toHaveLength(32);
    expect(isWireGuardKey(sloppy)).toBe(false);
  });
});

describe('redactWgQuick', () => {
  it('hides PrivateKey and PresharedKey and leaves every other byte alone', () => {
    const text = fixture('vps-fra.conf');
    const red = redactWgQuick(text);
    expect(red).not.toContain(K.vpsPriv);
    expect(red).not.toContain(K.vpsPsk);
    expect(red).toContain(`PublicKey = ${K.vpsPub}`);
    const before = text.split('\n');
    const after = red.split('\n');
    expect(after).toHaveLength(before.length);
    for (let i = 0; i < before.length; i++) {
      if (before[i]!.startsWith('PrivateKey')) expect(after[i]).toBe('PrivateKey = (hidden)');
      else if (before[i]!.startsWith('PresharedKey')) expect(after[i]).toBe('PresharedKey = (hidden)');
      else expect(after[i]).toBe(before[i]);
    }
  });

  it('keeps the BOM, CRLF, spacing, case and trailing comments', () => {
    const text = fixture('windows-crlf-bom.conf');
    expect(redactWgQuick(text)).toBe(text.replace(K.winPriv, '(hidden)'));
    expect(redactWgQuick(`\uFEFF\tprivatekey=${K.vpsPriv}  # laptop\r\npresharedkey =${K.vpsPsk}\r\n`)).toBe(
      '\uFEFF\tprivatekey=(hidden)  # laptop\r\npresharedkey =(hidden)\r\n',
    );
  });

  it('hides values that are not keys at all, and leaves empty values empty', () => {
    expect(redactWgQuick('PrivateKey = not-a-key-at-all\nPresharedKey =\n')).toBe(
      'PrivateKey = (hidden)\nPresharedKey =\n',
    );
  });

  it('hides keys wherever else they turn up, but not a PublicKey value', () => {
    const text = [
      `PostUp = wg set %i private-key <(echo ${K.vpsPriv})`,
      `# old key: ${K.mullvadPriv}`,
      K.protonPriv,
      `PublicKey = ${K.vpsPub} # was ${K.winPriv}`,
    ].join('\n');
    expect(redactWgQuick(text)).toBe(
      [
        'PostUp = wg set %i private-key <(echo (hidden))',
        '# old key: (hidden)',
        '(hidden)',
        `PublicKey = ${K.vpsPub} # was (hidden)`,
      ].join('\n'),
    );
  });

  it('leaves a redacted file unparseable rather than quietly keyless', () => {
    const { result, issues } = parse(redactWgQuick(fixture('mullvad-se-got-wg-001.conf')));
    expect(result).toBeNull();
    expect(issues.map(where)).toEqual([err(ConfigCodes.KEY, 3, 14, 'Interface.PrivateKey')]);
  });
});
