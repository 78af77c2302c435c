// Drives the exported web page in headless Debian Chromium (playwright-core, no browser download):
// serves the folder from a localhost HTTP server, loads images by drag-and-drop or the file picker,
// waits for the maps and collects console errors.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, extname, join, normalize, sep } from 'node:path';
import { chromium, BrowserContext, Page } from 'playwright-core';

export const CHROMIUM = process.env.SEMAIM_CHROMIUM ?? '/usr/bin/chromium';

/** Why the browser tests cannot run here, or null when they can. */
export function chromiumMissing(): string | null {
  return existsSync(CHROMIUM) ? null : `no Chromium at ${CHROMIUM} (Debian: apt-get install chromium; or set SEMAIM_CHROMIUM)`;
}

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.css': 'text/css',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.onnx': 'application/octet-stream',
  '.txt': 'text/plain',
};

/** A static file server for `root` on 127.0.0.1 (a free port). */
export async function serveFolder(root: string): Promise<{ url: string; close: () => Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://localhost').pathname);
    const file = normalize(join(root, path.endsWith('/') ? `${path}index.html` : path));
    if (!file.startsWith(root + sep) || !existsSync(file)) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': MIME[extname(file)] ?? 'application/octet-stream' }).end(readFileSync(file));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

export interface PageSession {
  page: Page;
  /** Console errors and uncaught exceptions so far. */
  errors: string[];
  close(): Promise<void>;
}

/** Opens `url` in a fresh headless Chromium profile and waits until the page says it is ready. */
export async function openPage(url: string): Promise<PageSession> {
  const profile = mkdtempSync(join(tmpdir(), 'semaim-chromium-'));
  const args = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ];
  const context: BrowserContext = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args,
    viewport: { width: 1160, height: 520 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(url);
  await waitForState(page, 'ready', 60_000);
  return {
    page,
    errors,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Waits for body[data-state] to become `state`; fails with the page's status line on 'error'. */
export async function waitForState(page: Page, state: string, timeout = 30_000): Promise<void> {
  await page.waitForFunction(`['error', ${JSON.stringify(state)}].includes(${STATE_IN_PAGE})`, undefined, { timeout });
  const now = await page.evaluate(STATE_IN_PAGE);
  if (now !== state) throw new Error(`page: ${await page.textContent('#status')}`);
}

// Code that runs inside the page (plain JavaScript: this project compiles without DOM types).
const DROP_IN_PAGE = `({ b64, name, type }) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const dt = new DataTransfer();
  dt.items.add(new File([bytes], name, { type }));
  document.getElementById('drop').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
}`;
const RESULT_IN_PAGE = `(() => {
  const r = window.semaimResult;
  const arr = (k) => Array.from(r[k] ?? []);
  return { name: r.name, pixels: arr('pixels'), tokens: arr('tokens'), attention: arr('attention'), similarity: arr('similarity'), order: arr('order'), centre: r.centre };
})()`;
const STATE_IN_PAGE = 'document.body.dataset.state';

/** Drops an image file onto the page's drop zone as a user would (a DataTransfer with one File). */
export async function dropImage(page: Page, path: string, type = 'image/png'): Promise<void> {
  const arg = { b64: readFileSync(path).toString('base64'), name: basename(path), type };
  await page.evaluate(`(${DROP_IN_PAGE})(${JSON.stringify(arg)})`);
}

export interface PageResult {
  name: string;
  pixels: number[];
  tokens: number[];
  attention: number[];
  similarity: number[];
  order: number[];
  centre: number;
}

/** What the page computed for the last image (window.semaimResult). */
export async function pageResult(page: Page): Promise<PageResult> {
  return (await page.evaluate(RESULT_IN_PAGE)) as PageResult;
}
