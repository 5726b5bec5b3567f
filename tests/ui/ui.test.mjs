// The web UI in a real browser: Debian's Chromium (/usr/bin/chromium),
// headless, driven by playwright-core, against the release binary on the
// embedded SQLite store in a temporary directory. Each test saves a
// screenshot under target/screenshots/.
//
//   tests/ui/install.sh && node --test tests/ui/ui.test.mjs
//
// PORTCULLIS_BIN overrides the binary ($CARGO_TARGET_DIR/release/portcullis).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const BIN = process.env.PORTCULLIS_BIN
  || path.join(process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target'), 'release', 'portcullis');
const SHOTS = path.join(ROOT, 'target', 'screenshots');
const OPERATOR = 'ui-operator-token-7c1d2e9f40';
const ADMIN = { email: 'root@ui.example', password: 'lantern harbour keeper 4' };
const USER = { email: 'ada@ui.example', password: 'copper kettle morning 8' };

let server, base, dir, browser;

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
    probe.on('error', reject);
  });
}

async function api(method, route, body, token) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(base + route, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

before(async () => {
  assert.ok(fs.existsSync(BIN), `no binary at ${BIN}: cargo build --release`);
  fs.mkdirSync(SHOTS, { recursive: true });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'portcullis-ui-'));
  for (const name of ['config', 'policies']) {
    fs.cpSync(path.join(ROOT, name), path.join(dir, name), { recursive: true });
  }
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PORTCULLIS_')));
  Object.assign(env, {
    PORTCULLIS_SERVER__LISTEN: `127.0.0.1:${port}`,
    PORTCULLIS_SERVER__PUBLIC_URL: base,
    PORTCULLIS_SERVER__ADMIN_TOKEN: OPERATOR,
    PORTCULLIS_POLICIES__WATCH: 'false',
  });
  const created = spawnSync(BIN, ['user', 'create', '--email', ADMIN.email, '--name', 'Root', '--admin'], {
    cwd: dir, env, input: `${ADMIN.password}\n`, encoding: 'utf8', timeout: 120_000,
  });
  assert.equal(created.status, 0, created.stdout + created.stderr);
  const log = fs.openSync(path.join(dir, 'server.log'), 'a');
  server = spawn(BIN, ['serve'], { cwd: dir, env, stdio: ['ignore', 'ignore', log] });
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${base}/health`)).status === 200) break;
    } catch { /* not listening yet */ }
    assert.ok(i < 300, 'the server answers /health within 30 s');
    await new Promise((r) => setTimeout(r, 100));
  }
  const registered = await api('POST', '/auth/register', USER);
  assert.equal(registered.status, 201, JSON.stringify(registered.body));
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-gpu'],
  });
});

after(async () => {
  await browser?.close();
  server?.kill('SIGTERM');
  const log = dir && fs.existsSync(path.join(dir, 'server.log'))
    ? fs.readFileSync(path.join(dir, 'server.log'), 'utf8') : '';
  assert.ok(!log.includes('panicked'), `the server panicked:\n${log}`);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** A fresh browser context (its own cookies), at phone or desktop width. */
async function tab(width = 1100) {
  const context = await browser.newContext({ baseURL: base, viewport: { width, height: 800 } });
  return { context, page: await context.newPage() };
}

async function signIn(page, who) {
  await page.goto('/login');
  await page.getByLabel('E-mail address').fill(who.email);
  await page.getByLabel('Password').fill(who.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

const shot = (page, name) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });

test('1. a user signs in with a password, and out again', async () => {
  const { context, page } = await tab();
  const login = await page.goto('/login');
  const headers = login.headers();
  assert.match(headers['content-security-policy'], /script-src 'self'/);
  assert.equal(headers['x-frame-options'], 'DENY');
  assert.equal(headers['cache-control'], 'no-store');
  await page.getByLabel('E-mail address').fill(USER.email);
  await page.getByLabel('Password').fill(USER.password);
  // The password can be seen before it is sent (ASVS 2.1.12), and masked again.
  await page.getByRole('button', { name: 'Show password' }).click();
  assert.equal(await page.locator('#password').getAttribute('type'), 'text');
  await page.getByRole('button', { name: 'Hide password' }).click();
  assert.equal(await page.locator('#password').getAttribute('type'), 'password');
  await shot(page, 'login');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL('**/dashboard');
  assert.equal(await page.locator('#profile-email').textContent(), USER.email);
  const cookie = (await context.cookies()).find((c) => c.name === 'portcullis_session');
  assert.ok(cookie?.httpOnly, 'the session cookie is HttpOnly');
  assert.equal(cookie.sameSite, 'Lax');
  await shot(page, 'dashboard');

  const [signedOut] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/logout')),
    page.getByRole('button', { name: 'Sign out' }).click(),
  ]);
  assert.equal((await signedOut.allHeaders())['clear-site-data'], '"cache", "storage"');
  await page.waitForURL('**/login');
  await page.goto('/dashboard');
  assert.match(page.url(), /\/login$/, 'signed out, the dashboard sends to the sign-in page');
  await context.close();
});

test('1b. a wrong password and an unknown address get the same answer', async () => {
  const { context, page } = await tab(390);
  await signIn(page, { email: USER.email, password: 'not the right password' });
  const wrong = await page.locator('#login-error').textContent();
  await shot(page, 'login-error-phone');
  await signIn(page, { email: 'nobody@ui.example', password: 'not the right password' });
  assert.equal(await page.locator('#login-error').textContent(), wrong);
  assert.match(page.url(), /\/login$/);
  await context.close();
});

test('1c. a session ended from the dashboard stops working', async () => {
  const { context, page } = await tab();
  const other = await api('POST', '/auth/jwt/login', { username: USER.email, password: USER.password });
  assert.equal(other.status, 200);
  await signIn(page, USER);
  await page.waitForURL('**/dashboard');
  const before = await page.getByRole('button', { name: 'End', exact: true }).count();
  assert.ok(before >= 1, 'the API session is listed');
  await page.getByRole('button', { name: 'End', exact: true }).first().click();
  await page.waitForURL('**/dashboard');
  assert.equal(await page.getByRole('button', { name: 'End', exact: true }).count(), before - 1);
  await shot(page, 'dashboard-sessions');
  await context.close();
});

test('5. an API key is created, shown once, and revoked; then it stops working', async () => {
  const { context, page } = await tab();
  await signIn(page, USER);
  await page.waitForURL('**/dashboard');
  await page.getByLabel('Name of a new key').fill('ci');
  await page.getByLabel('Ends after (days; empty: never)').fill('30');
  await page.getByLabel('Your password').fill('not the right password');
  await page.getByRole('button', { name: 'Create key' }).click();
  await page.locator('#error').waitFor();
  assert.equal(await page.locator('#api-keys tbody tr').count(), 0, 'a wrong password makes no key');

  await page.getByLabel('Name of a new key').fill('ci');
  await page.getByLabel('Your password').fill(USER.password);
  await page.getByRole('button', { name: 'Create key' }).click();
  const secret = (await page.locator('#new-api-key').textContent()).trim();
  assert.match(secret, /^pcl_/);
  await shot(page, 'api-key-created');
  const decide = (key) => fetch(`${base}/v1/is_authorized`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': key },
    body: JSON.stringify({ action: 'Docs::Action::"read"', resource: 'Docs::Document::"ui"' }),
  });
  assert.equal((await decide(secret)).status, 200, 'the key authenticates a decision request');
  await page.goto('/dashboard');
  assert.equal(await page.locator('#new-api-key').count(), 0, 'the secret is shown only once');
  assert.ok(!(await page.content()).includes(secret.slice(12)), 'nor listed');

  await page.getByRole('button', { name: 'Revoke ci' }).click();
  await page.locator('#notice').waitFor();
  assert.equal(await page.locator('#api-keys tbody tr').count(), 0);
  assert.equal((await decide(secret)).status, 401, 'a revoked key authenticates nothing');
  await context.close();
});

test('5b. the password is changed with the current one', async () => {
  const who = { email: 'grace@ui.example', password: 'quiet river stone 11' };
  assert.equal((await api('POST', '/auth/register', who)).status, 201);
  const { context, page } = await tab();
  await signIn(page, who);
  await page.waitForURL('**/dashboard');
  await page.getByLabel('Current password').fill(who.password);
  await page.getByLabel('New password').fill('a different long phrase 12');
  await page.getByRole('button', { name: 'Change password' }).click();
  await page.locator('#notice').waitFor();
  const old = await api('POST', '/auth/jwt/login', { username: who.email, password: who.password });
  assert.equal(old.status, 400, 'the old password no longer signs in');
  const fresh = await api('POST', '/auth/jwt/login', { username: who.email, password: 'a different long phrase 12' });
  assert.equal(fresh.status, 200);
  await context.close();
});

test('8. a non-admin gets 403 on /admin, an admin sees the users', async () => {
  const { context, page } = await tab();
  await signIn(page, USER);
  await page.waitForURL('**/dashboard');
  assert.equal(await page.getByRole('link', { name: 'Admin' }).count(), 0);
  const refused = await page.goto('/admin');
  assert.equal(refused.status(), 403);
  await page.getByRole('heading', { name: 'Administrators only' }).waitFor();
  await shot(page, 'admin-refused');
  await context.close();

  const admin = await tab();
  await signIn(admin.page, ADMIN);
  await admin.page.waitForURL('**/dashboard');
  await admin.page.getByRole('link', { name: 'Admin' }).click();
  await admin.page.waitForURL('**/admin');
  const users = admin.page.locator('#users');
  await users.getByRole('cell', { name: USER.email }).waitFor();
  await admin.page.getByLabel('Search by e-mail or name').fill('ada@');
  await admin.page.getByRole('button', { name: 'Search' }).click();
  await admin.page.waitForURL('**/admin?q=ada%40');
  assert.equal(await users.locator('tbody tr').count(), 1);
  await shot(admin.page, 'admin');
  await admin.context.close();
});

test('9. a form posted without its CSRF token is refused', async () => {
  const { context, page } = await tab();
  // Before sign-in: no token in the form, or none in the cookie.
  await page.goto('/login');
  await page.getByLabel('E-mail address').fill(USER.email);
  await page.getByLabel('Password').fill(USER.password);
  await page.locator('input[name=csrf]').evaluate((input) => input.remove());
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'This form cannot be sent' }).waitFor();
  await shot(page, 'csrf-refused');
  const noCookie = await fetch(`${base}/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ username: USER.email, password: USER.password, csrf: 'guessed' }),
    redirect: 'manual',
  });
  assert.equal(noCookie.status, 403);

  // Signed in: a sign-out without the session's token leaves it signed in.
  await signIn(page, USER);
  await page.waitForURL('**/dashboard');
  const forged = await page.request.post('/logout', { form: { csrf: 'guessed' }, maxRedirects: 0 });
  assert.equal(forged.status(), 403);
  const bare = await page.request.post('/logout', { form: {}, maxRedirects: 0 });
  assert.equal(bare.status(), 403);
  await page.goto('/dashboard');
  assert.match(page.url(), /\/dashboard$/, 'still signed in');
  await context.close();
});
