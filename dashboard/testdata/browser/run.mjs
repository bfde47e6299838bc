// Drives the dashboard in headless Debian chromium for browser_test.go.
//
// Environment: X0T_URL (the control plane), X0T_KEY (an owner API key),
// X0T_SHOTS (directory for screenshots), X0T_MESH (mesh to create).
//
// It talks to the Go test over a line protocol: it prints a command on
// stdout and waits for the test to answer "ok" on stdin.
//   token SECRET   the join token created in the browser; the test joins nodes a, b, c
//   cut A B        the test cuts the link between A and B
//   mend A B       the test restores it
//   done           everything passed (no answer expected)
// Any other stdout line is a log line; a failure exits non-zero.

import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const { X0T_URL: url, X0T_KEY: key, X0T_SHOTS: shots, X0T_MESH: mesh } = process.env;
const wait = Number(process.env.X0T_WAIT_MS || 60000);
if (!url || !key || !shots || !mesh) {
  console.error('X0T_URL, X0T_KEY, X0T_SHOTS and X0T_MESH are required');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const rl = createInterface({ input: process.stdin });
const lines = rl[Symbol.asyncIterator]();
async function ask(cmd) {
  process.stdout.write(`${cmd}\n`);
  const { value, done } = await lines.next();
  if (done || value.trim() !== 'ok') throw new Error(`${cmd}: the test answered ${done ? 'nothing' : JSON.stringify(value)}`);
}
const log = (msg) => process.stdout.write(`log ${msg}\n`);
const t0 = Date.now();
const step = (msg) => log(`${((Date.now() - t0) / 1000).toFixed(1)}s ${msg}`);

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
});
let page;
try {
  // The control plane's certificate is self-signed (the CLI pins its
  // fingerprint; a browser context can only be told to accept it).
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1440, height: 900 }, deviceScaleFactor: 1 });
  page = await ctx.newPage();
  page.setDefaultTimeout(wait);
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // Refused requests are logged by the browser itself; the test makes
    // some on purpose (a wrong key, a broken policy).
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`console: ${m.text()}`);
  });
  // Nothing may be fetched from anywhere but the control plane.
  const origin = new URL(url).origin;
  page.on('request', (r) => {
    if (!r.url().startsWith(origin) && !r.url().startsWith('data:')) problems.push(`request elsewhere: ${r.url()}`);
  });
  const shot = async (name) => {
    // Toasts are transient: keep them out of the pictures.
    await page.evaluate(() => document.getElementById('toasts')?.remove());
    await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
    step(`screenshot ${name}.png`);
  };

  // Sign in: a wrong key is refused, the owner key is accepted.
  await page.goto(url, { waitUntil: 'domcontentloaded' });
  await page.waitForSelector('#key');
  await page.fill('#key', 'x0t_key_wrong');
  await page.click('#signin');
  await page.waitForSelector('.form-error:text("not accepted")');
  await page.fill('#key', '');
  await shot('01-signin');
  await page.fill('#key', key);
  await page.click('#signin');
  await page.waitForSelector('.who-org');
  step('signed in');

  // Create the mesh.
  await page.waitForSelector('#mesh-name');
  await page.fill('#mesh-name', mesh);
  await page.fill('#mesh-desc', 'Browser test mesh');
  await page.click('#mesh-create');
  await page.waitForSelector(`#meshes tr[data-mesh="${mesh}"]`);
  step(`mesh ${mesh} created`);

  // Create an auto-approving, unlimited join token and hand it to the test.
  await page.click('a.nav-item[data-page="tokens"]');
  await page.waitForSelector('#token-create');
  await page.fill('#token-desc', 'lab nodes');
  await page.fill('#token-tags', 'lab');
  await page.fill('#token-uses', '0');
  await page.check('#token-auto');
  await page.click('#token-create');
  const secret = (await page.textContent('#token-secret', { timeout: wait })).trim();
  await page.waitForSelector('#tokens tbody tr');
  await shot('03-tokens');
  step('join token created');
  await ask(`token ${secret}`);

  // The nodes appear, online, without a reload.
  await page.click('a.nav-item[data-page="nodes"]');
  await page.waitForFunction(() => ['a', 'b', 'c'].every((n) => {
    const r = document.querySelector(`#nodes tr[data-node="${n}"]`);
    return r && r.dataset.online === 'true' && r.dataset.status === 'approved' && r.dataset.health === 'healthy' && Number(r.dataset.rx) > 0;
  }), null, { timeout: wait, polling: 250 });
  step('nodes a, b, c are online, healthy and have traffic');
  await shot('04-nodes');

  // The topology: every link measured and good.
  await page.click('a.nav-item[data-page="topology"]');
  const linkState = (a, b) => page.evaluate(([a, b]) => {
    const l = [...document.querySelectorAll('line.link')].find((x) =>
      (x.dataset.aName === a && x.dataset.bName === b) || (x.dataset.aName === b && x.dataset.bName === a));
    return l ? l.dataset.state : null;
  }, [a, b]);
  // waitLink waits until the link between a and b is in state want and
  // drawn in the colour of that state (after the colour transition).
  const RED = 'rgb(220, 38, 38)';
  const GREEN = 'rgb(22, 163, 74)';
  const waitLink = (a, b, want, colour) => page.waitForFunction(([a, b, want, colour]) => {
    const l = [...document.querySelectorAll('line.link')].find((x) =>
      (x.dataset.aName === a && x.dataset.bName === b) || (x.dataset.aName === b && x.dataset.bName === a));
    return l && l.dataset.state === want && getComputedStyle(l).stroke === colour;
  }, [a, b, want, colour], { timeout: wait, polling: 100 });
  await page.waitForFunction(() => {
    const ls = [...document.querySelectorAll('line.link')];
    return ls.length === 3 && ls.every((l) => l.dataset.state === 'good');
  }, null, { timeout: wait, polling: 250 });
  step('three good links');
  await page.waitForTimeout(1200); // let the live label settle for the picture
  await shot('05-topology');

  // Cut a–b: the link goes red without a reload; mend it: it comes back.
  const before = await page.evaluate(() => performance.getEntriesByType('navigation').length);
  await ask('cut a b');
  const cutAt = Date.now();
  await waitLink('a', 'b', 'down', RED);
  step(`link a–b shown down, in red, ${((Date.now() - cutAt) / 1000).toFixed(1)}s after the cut`);
  for (const [x, y] of [['a', 'c'], ['b', 'c']]) {
    const st = await linkState(x, y);
    if (st !== 'good') throw new Error(`link ${x}–${y} is ${st} while only a–b is cut`);
  }
  await page.click('line.link[data-state="down"] + line.link-hit', { force: true }).catch(() => {});
  await page.waitForTimeout(300);
  await shot('06-topology-cut');
  await ask('mend a b');
  const mendAt = Date.now();
  await waitLink('a', 'b', 'good', GREEN);
  step(`link a–b good again ${((Date.now() - mendAt) / 1000).toFixed(1)}s after the mend`);
  const after = await page.evaluate(() => performance.getEntriesByType('navigation').length);
  if (after !== before) throw new Error('the page reloaded');

  // ACL: saving needs a validated and tested draft.
  await page.click('a.nav-item[data-page="acl"]');
  await page.waitForSelector('#acl-editor');
  const policy = {
    acls: [
      { action: 'accept', src: ['tag:lab'], dst: ['tag:lab:22'], proto: 'tcp' },
      { action: 'accept', src: ['*'], dst: ['*:*'], proto: 'icmp' },
    ],
    tests: [
      { src: 'node:a', dst: 'node:b', proto: 'tcp', port: 22, want: 'accept' },
      { src: 'node:a', dst: 'node:b', proto: 'tcp', port: 80, want: 'deny' },
    ],
  };
  // A broken draft is refused by validation.
  await page.fill('#acl-editor', '{"acls":[{"action":"accept","src":["tag:nosuch"],"dst":["*:99999"]}]}');
  await page.click('#acl-validate');
  await page.waitForSelector('#acl-status[data-state="invalid"]');
  if (!(await page.isDisabled('#acl-save'))) throw new Error('save is enabled for an invalid policy');
  await page.fill('#acl-editor', JSON.stringify(policy, null, 2));
  if (!(await page.isDisabled('#acl-save'))) throw new Error('save is enabled before validation');
  await page.click('#acl-validate');
  await page.waitForSelector('#acl-status[data-state="valid"]');
  if (!(await page.isDisabled('#acl-save'))) throw new Error('save is enabled before a test');
  await page.fill('#acl-src', 'a');
  await page.fill('#acl-dst', 'b');
  await page.selectOption('#acl-proto', 'tcp');
  await page.fill('#acl-port', '80');
  await page.click('#acl-test');
  await page.waitForSelector('#acl-test-result[data-verdict="deny"]');
  await page.fill('#acl-port', '22');
  await page.click('#acl-test');
  await page.waitForSelector('#acl-test-result[data-verdict="accept"]');
  await page.waitForSelector('#acl-save:not([disabled])');
  await shot('07-acl');
  await page.click('#acl-save');
  await page.waitForSelector('#acl-status[data-state="saved"]:has-text("Saved.")');
  step('policy validated, tested and saved');

  // Audit: the chain verifies and shows what the browser did.
  await page.click('a.nav-item[data-page="audit"]');
  await page.waitForSelector('#audit tbody tr');
  await page.click('#audit-verify');
  await page.waitForSelector('#audit-verdict[data-ok="true"]');
  const actions = await page.$$eval('#audit .chip-action', (els) => els.map((e) => e.textContent));
  for (const a of ['mesh.create', 'token.create', 'acl.set']) {
    if (!actions.includes(a)) throw new Error(`audit log lacks ${a}: ${actions.join(', ')}`);
  }
  await shot('08-audit');
  step('audit chain verified');

  // Meshes, last: it now counts the nodes.
  await page.click('a.nav-item[data-page="meshes"]');
  await page.waitForSelector(`#meshes tr[data-mesh="${mesh}"]`);
  await shot('02-meshes');

  if (problems.length) throw new Error(problems.join('\n'));
  process.stdout.write('done\n');
} catch (e) {
  if (page) await page.screenshot({ path: join(shots, 'failure.png'), fullPage: true }).catch(() => {});
  console.error(e.stack || String(e));
  await browser.close();
  process.exit(1);
}
await browser.close();
process.exit(0); // stdin stays open: leave without waiting for it
