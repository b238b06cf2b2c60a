import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 20_000,
    hookTimeout: 60_000,
    // Lab tests share kernel state (wireguard-go control sockets live in /var/run/wireguard);
    // files run in parallel but each names everything with its own pid.
    pool: 'forks',
  },
});
