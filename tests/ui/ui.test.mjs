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
import crypto from 'node:crypto';
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

let server, provider, base, dir, browser;

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
  // The test OIDC provider (backends/oidc/server.js), as provider `op`.
  const providerPort = await freePort();
  const issuer = `http://127.0.0.1:${providerPort}`;
  provider = spawn('node', [path.join(ROOT, 'backends/oidc/server.js')], {
    env: { ...process.env, OIDC_PORT: String(providerPort), OIDC_REDIRECT_URIS: `${base}/auth/oauth/op/callback` },
    stdio: ['ignore', 'ignore', fs.openSync(path.join(dir, 'oidc.log'), 'a')],
  });
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${issuer}/.well-known/openid-configuration`)).status === 200) break;
    } catch { /* not listening yet */ }
    assert.ok(i < 300, 'the OIDC provider answers within 30 s');
    await new Promise((r) => setTimeout(r, 100));
  }
  fs.appendFileSync(path.join(dir, 'config', 'portcullis.toml'), `
[backends.op]
kind = "oidc"
issuer = "${issuer}"
client_id = "portcullis"
client_secret = "portcullis-test-secret"
redirect_url = "${base}/auth/oauth/op/callback"
scopes = ["openid", "email", "profile", "groups"]
display_name = "Test provider"
`);
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
  provider?.kill('SIGTERM');
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

/** The TOTP code (RFC 6238: SHA-1, 6 digits, 30 s) of a base32 secret at time step `step`. */
function totp(secret, step = Math.floor(Date.now() / 30_000)) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of secret.replace(/=+$/, '')) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = crypto.createHmac('sha1', key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

/** The body of the next mail to `to` about `subject` in the outbox (removed once read), quoted-printable undone. */
async function takeMail(to, subject) {
  const outbox = path.join(dir, 'var', 'outbox');
  for (let i = 0; i < 100; i++) {
    for (const name of fs.existsSync(outbox) ? fs.readdirSync(outbox) : []) {
      if (!name.endsWith('.eml')) continue;
      const file = path.join(outbox, name);
      const text = fs.readFileSync(file, 'utf8');
      if (text.includes(`To: ${to}`) && text.includes(`Subject: ${subject}`)) {
        fs.rmSync(file);
        return text.replace(/=\r?\n/g, '').replace(/=3D/g, '=');
      }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`no mail to ${to} about ${subject}`);
}

/** Signs in at the test provider's own pages as `login`, and consents. */
async function providerSignIn(page, login) {
  await page.locator('input[name=login]').fill(login);
  await page.locator('input[name=password]').fill('any');
  await page.locator('button[type=submit]').click();
  await page.getByRole('button', { name: 'Continue' }).click();
}

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

test('2. a user signs in through the OAuth provider by clicking its button', async () => {
  const { context, page } = await tab();
  await page.goto('/login');
  await page.getByRole('link', { name: 'Test provider' }).click();
  await providerSignIn(page, 'erin');
  await page.waitForURL('**/dashboard');
  // A first sign-in makes the account, from the provider's verified address.
  assert.equal(await page.locator('#profile-email').textContent(), 'erin@portcullis.test');
  assert.equal((await page.locator('#profile-verified').textContent()).trim(), 'yes');
  await shot(page, 'oauth-signed-in');
  await context.close();

  // The next sign-in is the same account.
  const again = await tab();
  await again.page.goto('/login');
  await again.page.getByRole('link', { name: 'Test provider' }).click();
  await providerSignIn(again.page, 'erin');
  await again.page.waitForURL('**/dashboard');
  assert.equal(await again.page.locator('#profile-email').textContent(), 'erin@portcullis.test');
  await again.context.close();
});

test('2b. a signed-in user links a provider account, then signs in with it', async () => {
  const { context, page } = await tab();
  await signIn(page, USER);
  await page.waitForURL('**/dashboard');
  // Linking needs the password: a stolen session alone cannot plant a way back in.
  await page.getByLabel('Password (to link Test provider)').fill('not the right password');
  await page.getByRole('button', { name: 'Link Test provider' }).click();
  await page.locator('#error').waitFor();
  await page.getByLabel('Password (to link Test provider)').fill(USER.password);
  await page.getByRole('button', { name: 'Link Test provider' }).click();
  await page.getByRole('link', { name: 'Continue to Test provider' }).click();
  await providerSignIn(page, 'frank');
  await page.waitForURL('**/dashboard?linked=1');
  await page.locator('#notice').waitFor();
  await context.close();

  const fresh = await tab();
  await fresh.page.goto('/login');
  await fresh.page.getByRole('link', { name: 'Test provider' }).click();
  await providerSignIn(fresh.page, 'frank');
  await fresh.page.waitForURL('**/dashboard');
  assert.equal(await fresh.page.locator('#profile-email').textContent(), USER.email);
  await fresh.context.close();
});

test('3. a user signs in with a magic link read from the delivered message', async () => {
  const { context, page } = await tab();
  await page.goto('/login');
  await page.getByLabel('Send a sign-in link to').fill(USER.email);
  await page.getByRole('button', { name: 'Send link' }).click();
  const said = await page.locator('#login-notice').textContent();
  // An unknown address is told the same.
  await page.getByLabel('Send a sign-in link to').fill('nobody@ui.example');
  await page.getByRole('button', { name: 'Send link' }).click();
  assert.equal(await page.locator('#login-notice').textContent(), said);
  await shot(page, 'magic-link-sent');

  const mail = await takeMail(USER.email, 'Your sign-in link');
  const link = mail.match(/http:\/\/\S+\/magic-link\?token=[\w-]+/)[0];
  assert.ok(link.startsWith(base), link);
  // Opening the link spends nothing (a mail scanner may follow it): a button signs in.
  await page.goto(link);
  await page.goto(link);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL('**/dashboard');
  assert.equal(await page.locator('#profile-email').textContent(), USER.email);
  await context.close();

  // A used link signs in no more.
  const other = await tab();
  await other.page.goto(link);
  await other.page.getByRole('button', { name: 'Sign in' }).click();
  await other.page.locator('#login-error').waitFor();
  assert.match(other.page.url(), /\/magic-link$/);
  await other.context.close();
});

test('4. a user enrols TOTP from a QR code, then signs in with a code', async () => {
  const who = { email: 'tess@ui.example', password: 'amber lantern violet 5' };
  assert.equal((await api('POST', '/auth/register', who)).status, 201);
  const { context, page } = await tab();
  await signIn(page, who);
  await page.waitForURL('**/dashboard');
  await page.getByLabel('Password (to set up an app)').fill(who.password);
  await page.getByRole('button', { name: 'Set up' }).click();
  const qr = await page.locator('#mfa-qr').getAttribute('src');
  assert.match(qr, /^data:image\/svg\+xml;base64,/);
  assert.match(Buffer.from(qr.split(',')[1], 'base64').toString(), /<svg[\s\S]*<\/svg>/);
  const secret = (await page.locator('#mfa-secret').textContent()).trim();
  assert.match(secret, /^[A-Z2-7]{32}$/);
  await shot(page, 'mfa-enrol');
  const step = Math.floor(Date.now() / 30_000);
  await page.getByLabel('Code from the app').fill(totp(secret, step));
  await page.getByRole('button', { name: 'Confirm' }).click();
  await page.locator('#notice').waitFor();
  assert.match(await page.locator('#mfa-state').textContent(), /set up/);
  await context.close();

  const next = await tab();
  await signIn(next.page, who);
  await next.page.waitForURL('**/login/mfa');
  await next.page.getByLabel('Code from your authenticator app').fill('000000' === totp(secret, step + 1) ? '111111' : '000000');
  await next.page.getByRole('button', { name: 'Verify' }).click();
  await next.page.locator('#mfa-error').waitFor();
  await shot(next.page, 'mfa-code');
  // The code of the confirmation is spent: the next time step's code signs in.
  await next.page.getByLabel('Code from your authenticator app').fill(totp(secret, step + 1));
  await next.page.getByRole('button', { name: 'Verify' }).click();
  await next.page.waitForURL('**/dashboard');
  assert.equal(await next.page.locator('#profile-email').textContent(), who.email);

  // 4b. Another sign-in waits, and is approved from this dashboard: the
  // waiting page (htmx polling) goes on to the dashboard by itself.
  const waiting = await tab(390);
  await signIn(waiting.page, who);
  await waiting.page.waitForURL('**/login/mfa');
  await waiting.page.locator('#mfa-waiting').waitFor();
  await next.page.goto('/dashboard');
  await next.page.locator('#approvals').waitFor();
  await shot(next.page, 'mfa-approval');
  await next.page.getByRole('button', { name: 'Approve' }).click();
  await next.page.locator('#notice').waitFor();
  await waiting.page.waitForURL('**/dashboard', { timeout: 15_000 });
  assert.equal(await waiting.page.locator('#profile-email').textContent(), who.email);
  await waiting.context.close();
  await next.context.close();
});

test('6. an admin disables a user; that user\'s next request fails', async () => {
  const who = { email: 'hal@ui.example', password: 'silver orchard tide 7' };
  assert.equal((await api('POST', '/auth/register', who)).status, 201);
  const token = (await api('POST', '/auth/jwt/login', { username: who.email, password: who.password })).body.access_token;
  assert.equal((await api('GET', '/users/me', undefined, token)).status, 200);
  const user = await tab();
  await signIn(user.page, who);
  await user.page.waitForURL('**/dashboard');

  const admin = await tab();
  await signIn(admin.page, ADMIN);
  await admin.page.waitForURL('**/dashboard');
  await admin.page.goto('/admin?q=hal%40');
  await admin.page.getByRole('link', { name: who.email }).click();
  await admin.page.getByRole('button', { name: 'Disable' }).click();
  await admin.page.locator('#notice').waitFor();
  assert.equal(await admin.page.locator('#user-active').textContent(), 'no');
  await shot(admin.page, 'admin-user-disabled');

  await user.page.goto('/dashboard');
  assert.match(user.page.url(), /\/login$/, 'the browser session ended');
  assert.equal((await api('GET', '/users/me', undefined, token)).status, 401, 'and so did the API session');
  await signIn(user.page, who);
  await user.page.locator('#login-error').waitFor();

  // Deleting warns first, then removes the user.
  await admin.page.getByRole('button', { name: 'Delete…' }).click();
  await admin.page.locator('#delete-warning').waitFor();
  await admin.page.getByRole('button', { name: 'Delete for good' }).click();
  await admin.page.getByRole('heading', { name: 'User deleted' }).waitFor();
  await user.context.close();
  await admin.context.close();
});

test('7. an admin grants a role, and the decision tester flips to Allow', async () => {
  const { context, page } = await tab();
  await signIn(page, ADMIN);
  await page.waitForURL('**/dashboard');
  await page.goto('/admin?q=ada%40');
  await page.getByRole('link', { name: USER.email }).click();
  const principal = (await page.locator('#user-principal').textContent()).trim();
  const ask = async () => {
    await page.goto('/admin/tester');
    await page.getByLabel('Principal').fill(principal);
    await page.getByLabel('Action').fill('Docs::Action::"read"');
    await page.getByLabel('Resource').fill('Docs::Document::"ui-report"');
    await page.getByRole('button', { name: 'Decide' }).click();
    return (await page.locator('#decision').textContent()).trim();
  };
  assert.equal(await ask(), 'Deny');

  await page.goto('/admin/roles');
  await page.getByLabel('Name').fill('ui-reader');
  await page.getByRole('button', { name: 'Save role' }).click();
  await page.locator('#notice').waitFor();
  await page.getByLabel('Role', { exact: true }).selectOption('ui-reader');
  await page.getByLabel('Action (a uid, or * for every action)').fill('Docs::Action::"read"');
  await page.getByLabel('Resource (a uid, or * for any)').fill('Docs::Document::"ui-report"');
  await page.getByRole('button', { name: 'Grant' }).click();
  await page.locator('#notice').waitFor();
  await shot(page, 'admin-roles');

  await page.goto('/admin?q=ada%40');
  await page.getByRole('link', { name: USER.email }).click();
  await page.getByLabel('Assign a role').selectOption('ui-reader');
  await page.getByRole('button', { name: 'Assign' }).click();
  await page.locator('#notice').waitFor();
  assert.match(await page.locator('#user-roles').textContent(), /ui-reader/);
  assert.match(await page.locator('#user-permissions').textContent(), /ui-report/);

  assert.equal(await ask(), 'Allow');
  assert.match(await page.locator('pre.source').first().textContent(), /ui-report/);
  await shot(page, 'admin-tester');
  await context.close();
});

test('10. the operations pages: policies, backends, backups, journal and settings', async () => {
  const { context, page } = await tab();
  await signIn(page, ADMIN);
  await page.waitForURL('**/dashboard');

  // Policies: a file that does not validate is refused with its file:line, the served set stays.
  await page.goto('/admin/policies');
  const served = await page.locator('#policies tbody tr').count();
  assert.ok(served > 0);
  fs.writeFileSync(path.join(dir, 'policies', 'broken.cedar'), '@id("broken")\npermit(principal, action, resource) when { principal.nope ==  };\n');
  await page.getByRole('button', { name: 'Validate and reload' }).click();
  await page.locator('#diagnostics').waitFor();
  assert.match(await page.locator('#diagnostics').textContent(), /broken\.cedar:2/);
  assert.equal(await page.locator('#policies tbody tr').count(), served);
  await shot(page, 'admin-policies-invalid');
  fs.rmSync(path.join(dir, 'policies', 'broken.cedar'));
  await page.getByRole('button', { name: 'Validate and reload' }).click();
  await page.locator('#notice').waitFor();

  // Backends: the embedded store is active, and its breaker is shown.
  await page.goto('/admin/backends');
  assert.match(await page.locator('#backends').textContent(), /sqlite[\s\S]*active/);
  await shot(page, 'admin-backends');

  // Journal: a role made and rolled back (after a confirmation) is gone.
  await page.goto('/admin/roles');
  await page.getByLabel('Name').fill('ui-fleeting');
  await page.getByRole('button', { name: 'Save role' }).click();
  await page.locator('#notice').waitFor();
  await page.goto('/admin/journal');
  const row = page.locator('#journal tbody tr', { hasText: 'ui-fleeting' }).first();
  await row.getByRole('button', { name: /Roll back/ }).click();
  await page.locator('#rollback-warning').waitFor();
  await shot(page, 'admin-journal-confirm');
  await page.getByRole('button', { name: 'Roll back', exact: true }).click();
  await page.locator('#notice').waitFor();
  await page.goto('/admin/roles');
  assert.equal(await page.locator('#role-ui-fleeting').count(), 0, 'the rolled-back role is gone');

  // Backups: one taken, then restored after a confirmation.
  await page.goto('/admin/recovery');
  await page.getByLabel('Label (optional)').fill('ui');
  await page.getByRole('button', { name: 'Back up now' }).click();
  await page.locator('#notice').waitFor();
  const backup = page.locator('#backups tbody tr', { hasText: 'ui' }).first();
  await backup.getByRole('button', { name: /Restore/ }).click();
  await page.locator('#restore-warning').waitFor();
  await page.getByRole('button', { name: 'Restore', exact: true }).click();
  await page.locator('#notice').waitFor();
  assert.match(await page.locator('#notice').textContent(), /restored/);
  await shot(page, 'admin-recovery');

  // Settings: closing registration takes the link off the sign-in page.
  await page.goto('/admin/settings');
  await page.getByLabel('registration_open').uncheck();
  await page.getByRole('button', { name: 'Save' }).click();
  await page.locator('#notice').waitFor();
  const visitor = await tab();
  await visitor.page.goto('/login');
  assert.equal(await visitor.page.getByRole('link', { name: 'Create an account' }).count(), 0);
  await page.getByLabel('registration_open').check();
  await page.getByLabel('password_min_length').fill('7');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.locator('#error').waitFor();
  // Refused as a whole: the page shows the settings as they still are.
  assert.equal(await page.getByLabel('registration_open').isChecked(), false);
  await page.getByLabel('registration_open').check();
  await page.getByLabel('password_min_length').fill('12');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.locator('#notice').waitFor();
  await visitor.page.goto('/login');
  await visitor.page.getByRole('link', { name: 'Create an account' }).waitFor();
  await shot(page, 'admin-settings');
  await visitor.context.close();
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
  await page.locator('form[action="/login"] input[name=csrf]').evaluate((input) => input.remove());
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
