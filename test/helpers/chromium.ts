// Debian's headless Chromium inside a lab namespace (a LAN client browsing
// its router), driven by puppeteer-core, for the dashboard's e2e tests.
//
// `ip netns exec` execs Chromium in place (same pid), and puppeteer talks to
// it over fds 3/4 (pipe: true), which cross the namespace boundary where a
// debugging port would not.
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';

export interface LabBrowser {
  browser: Browser;
  page: Page;
  /** Script errors and CSP violations seen on any page (a 401/403 answer's console line is not one). */
  errors: string[];
  /** Closes the browser; kills it (our own child, by pid) if it does not go. */
  close(): Promise<void>;
}

/** Chromium (`chromium`, the executable) in namespace `ns`; its profile and launcher in `dir`; only `dashboard` (an address) is looked up. */
export async function launchChromium(o: { chromium: string; ns: string; dir: string; dashboard: string }): Promise<LabBrowser> {
  const launcher = join(o.dir, 'chromium-in-client');
  writeFileSync(launcher, `#!/bin/sh\nexec ip netns exec ${o.ns} ${o.chromium} "$@"\n`);
  chmodSync(launcher, 0o755);
  const browser = await puppeteer.launch({
    executablePath: launcher,
    pipe: true,
    headless: true,
    userDataDir: join(o.dir, 'profile'),
    // --no-sandbox: Chromium's sandbox refuses to run as root (CI is root).
    // The rest: no lookups of Google's services from the lab client (they would fill the query log with SERVFAILs).
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--window-size=1280,900', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-domain-reliability', '--disable-features=AutofillServerCommunication,OptimizationHints,MediaRouter,Translate,NetworkTimeServiceQuerying', '--dns-prefetch-disable',
      // Whatever Chromium still looks up for itself (Google's services) fails inside the browser: the lab's query log holds the test's own questions.
      `--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE ${o.dashboard}`],
    defaultViewport: { width: 1280, height: 900 },
    timeout: 60_000,
  });
  const errors: string[] = [];
  const close = async (): Promise<void> => {
    const p = browser.process();
    await browser.close().catch(() => undefined);
    if (p && p.exitCode === null) p.kill('SIGKILL');
  };
  try {
    const page = await browser.newPage();
    // A CSP violation or a script error on any page fails the test that caused it.
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => {
      if (m.type() === 'error' && !/status of 40[13]/.test(m.text())) errors.push(m.text());
    });
    return { browser, page, errors, close };
  } catch (e) {
    await close();
    throw e;
  }
}
