import { describe, expect, it } from 'vitest';
import { createReloadableLogger } from '../../daemon/logger.js';

describe('the daemon logger', () => {
  it('setLevel reaches the children modules were given at start (log.level on reload)', () => {
    const { logger, setLevel } = createReloadableLogger('info');
    const dns = logger.child({ module: 'dns' }) as unknown as { level: string; isLevelEnabled(l: string): boolean };
    const sub = (dns as unknown as { child(b: object): { level: string } }).child({ path: 'tunnel' });
    expect(dns.isLevelEnabled('debug')).toBe(false);
    setLevel('debug');
    expect(dns.level).toBe('debug');
    expect(sub.level).toBe('debug');
    expect(dns.isLevelEnabled('debug')).toBe(true);
    setLevel('warn');
    expect(dns.isLevelEnabled('info')).toBe(false);
    expect((logger as unknown as { level: string }).level).toBe('warn');
  });
});
