// Browser end-to-end tests of the story: the demo app built in
// web/dist/demo/browser, served by a real `tierguard serve --dev`, driven in
// Debian's headless chromium through playwright-core.
//
// Run with `node --test e2e/story.test.mjs` from web/ after building the
// app. It builds nothing of the app itself; it builds the Go binary into a
// temporary directory (or uses $TIERGUARD_BIN) and serves a temporary copy
// of the policies, which the policy-change test edits while the service
// runs. Screenshots go to web/e2e/artifacts/ (gitignored).
//
// Without chromium (CHROMIUM_PATH, default /usr/bin/chromium) the tests are
// skipped with a reason, except under CI=true, where that is a failure.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, createWriteStream } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const web = resolve(here, '..');
const repo = resolve(web, '..');
const app = join(web, 'dist', 'demo', 'browser');
const artifacts = join(here, 'artifacts');
const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const inCI = process.env.CI === 'true';

const TIERS = ['anonymous', 'free', 'plus', 'pro'];

// The element each UI route shows once its API data is on the page. A route
// the policy gains without an entry here fails the walk on purpose.
const MARKERS = {
  '/': 'home-news',
  '/login': 'login-form',
  '/upgrade': 'upgrade-plans',
  '/videos': 'videos-list',
  '/videos/:id': 'video-data',
  '/account': 'account-data',
  '/playlists': 'playlists-data',
  '/protected-content': 'treasure-map',
  '/admin': 'admin-data',
};

const WAIT = 15_000;

let missing = '';
if (!existsSync(chromiumPath)) {
  missing = `chromium not found at ${chromiumPath} (apt-get install chromium, or set CHROMIUM_PATH)`;
  if (inCI) {
    test('chromium is installed (required under CI=true)', () => assert.fail(missing));
  } else {
    test('the story in the browser', { skip: missing }, () => {});
  }
}

let base = '';
let server;
let browser;
let work = '';
let policies = '';

/** freePort asks the kernel for a free loopback port. */
function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.on('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

async function getJSON(path, token) {
  const res = await fetch(base + path, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  return { status: res.status, headers: res.headers, body: await res.json() };
}

async function tokenFor(tier) {
  const res = await fetch(base + '/dev/token', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ sub: `walker-${tier}`, tier }),
  });
  assert.equal(res.status, 200, 'POST /dev/token');
  return (await res.json()).access_token;
}

async function health() {
  return (await getJSON('/health/ready')).body;
}

async function waitFor(what, fn, ms = 30_000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what} (last: ${last})`);
}

async function startService() {
  work = mkdtempSync(join(tmpdir(), 'tierguard-e2e-'));
  let bin = process.env.TIERGUARD_BIN;
  if (!bin) {
    bin = join(work, 'tierguard');
    execFileSync('go', ['build', '-o', bin, './cmd/tierguard'], { cwd: repo, stdio: 'inherit' });
  }
  policies = join(work, 'policies');
  cpSync(join(repo, 'policies', 'tierguard'), join(policies, 'tierguard'), { recursive: true });

  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const log = createWriteStream(join(artifacts, 'server.log'));
  server = spawn(
    bin,
    ['serve', '--dev', '--addr', `127.0.0.1:${port}`, '--app', app, '--policies', policies],
    { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  server.stdout.pipe(log);
  server.stderr.pipe(log);
  let exited = null;
  server.on('exit', (code) => (exited = code));
  await waitFor('/health/ready', async () => {
    if (exited !== null) throw new Error(`tierguard exited with ${exited}; see e2e/artifacts/server.log`);
    const res = await fetch(base + '/health/ready');
    return res.status === 200;
  }, 60_000);
}

async function launch() {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: chromiumPath,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
    ],
  });
}

/**
 * session opens a fresh browser context (its own sessionStorage), signed in
 * through the demo's login page unless the tier is anonymous. It records
 * every /api response that answered 403.
 */
async function session(tier) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  const forbidden = [];
  page.on('response', (r) => {
    const u = new URL(r.url());
    if (u.pathname.startsWith('/api/') && r.status() === 403) {
      forbidden.push(`${r.request().method()} ${u.pathname}`);
    }
  });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  if (tier !== 'anonymous') {
    await page.goto(base + '/login');
    await page.getByTestId('login-name').fill(`e2e-${tier}`);
    await page.getByTestId(`login-as-${tier}`).click();
    await page.waitForURL(base + '/');
    await page.getByTestId('home-news').waitFor();
    await waitForTier(page, tier);
  }
  return { context, page, forbidden, errors };
}

async function waitForTier(page, tier) {
  await page.waitForFunction(
    (t) => document.querySelector('[data-testid=tier-badge]')?.textContent?.trim() === t,
    tier,
  );
}

async function shot(page, name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

function query(page) {
  return Object.fromEntries(new URL(page.url()).searchParams);
}

function pathOf(page) {
  return new URL(page.url()).pathname;
}

// Without chromium the suite is not declared at all: one skipped test above
// (or, under CI, one failed test) says why.
const suite = missing ? () => {} : describe;

suite('the story in the browser', () => {
  before(async () => {
    assert.ok(
      existsSync(join(app, 'index.html')),
      `no built app in ${app}: run \`npm run build\` in web/ first`,
    );
    rmSync(artifacts, { recursive: true, force: true });
    mkdirSync(artifacts, { recursive: true });
    await startService();
    browser = await launch();
  });

  after(async () => {
    await browser?.close();
    if (server && server.exitCode === null) {
      server.kill('SIGTERM');
      await new Promise((r) => server.once('exit', r));
    }
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('anonymous sees home, and is sent to login from the protected page', async () => {
    const { context, page, forbidden } = await session('anonymous');
    await page.goto(base + '/');
    await page.getByTestId('home-news').waitFor();
    assert.match(await page.getByTestId('home-news').innerText(), /treasure map/i);
    await shot(page, '01-anonymous-home');

    await page.goto(base + '/protected-content');
    await page.getByTestId('login-form').waitFor();
    assert.equal(pathOf(page), '/login');
    assert.equal(query(page).reason, 'unauthenticated');
    assert.equal(query(page).required_tier, 'plus');
    assert.equal(query(page).return_url, '/protected-content');
    await shot(page, '02-anonymous-sent-to-login');
    assert.deepEqual(forbidden, []);
    await context.close();
  });

  test('free is redirected to the upgrade page, which says plus is needed', async () => {
    const { context, page, forbidden } = await session('free');
    await page.getByTestId('nav-protected-content').click();
    await page.getByTestId('upgrade-plans').waitFor();
    assert.equal(pathOf(page), '/upgrade');
    assert.equal(query(page).required_tier, 'plus');
    assert.equal(await page.getByTestId('upgrade-message').innerText(), 'This page needs the plus plan.');
    await shot(page, '03-free-upgrade-needs-plus');
    assert.deepEqual(forbidden, [], 'no API call answered 403');
    await context.close();
  });

  test('plus sees the treasure map, rendered from the API', async () => {
    const { context, page, forbidden } = await session('plus');
    const api = page.waitForResponse((r) => new URL(r.url()).pathname === '/api/treasure-map');
    await page.getByTestId('nav-protected-content').click();
    const res = await api;
    assert.equal(res.status(), 200);
    // The page's own response body may already be gone from the browser
    // (Chromium drops bodies of requests a navigation has moved past), so
    // the expected content comes from the API directly, for another plus
    // token: the map is the same for every plus user.
    const direct = await fetch(base + '/api/treasure-map', {
      headers: { Authorization: 'Bearer ' + (await tokenFor('plus')) },
    });
    assert.equal(direct.status, 200);
    const body = await direct.json();

    await page.getByTestId('treasure-map').waitFor();
    assert.equal(pathOf(page), '/protected-content');
    assert.equal(await page.getByTestId('treasure-title').innerText(), body.title);
    const steps = await page.getByTestId('treasure-map').locator('li').allInnerTexts();
    assert.deepEqual(steps, body.map);
    await shot(page, '04-plus-treasure-map');

    // The 4k button is a pro feature: plus gets the upgrade prompt instead.
    await page.goto(base + '/videos/1');
    await page.getByTestId('video-data').waitFor();
    await page.getByTestId('upgrade-4k').waitFor();
    assert.equal(await page.getByTestId('upgrade-4k').innerText(), '4K needs the pro plan');
    assert.equal(await page.getByTestId('btn-4k').count(), 0);
    assert.equal(await page.getByTestId('btn-hd').count(), 1);
    await shot(page, '05-plus-video-4k-locked');
    assert.deepEqual(forbidden, []);
    await context.close();
  });

  test('pro reaches admin, and the 4k button', async () => {
    const { context, page, forbidden } = await session('pro');
    await page.getByTestId('nav-admin').click();
    await page.getByTestId('admin-data').waitFor();
    assert.equal(pathOf(page), '/admin');
    assert.match(await page.getByTestId('admin-data').innerText(), /users/);
    await shot(page, '06-pro-admin');

    await page.goto(base + '/videos/1');
    await page.getByTestId('btn-4k').waitFor();
    assert.equal(await page.getByTestId('upgrade-4k').count(), 0);
    await shot(page, '07-pro-video-4k');
    assert.deepEqual(forbidden, []);
    await context.close();
  });

  test('every page of the route map, for every tier, shows its data or redirects', async () => {
    await walk('before');
  });

  test('after a policy change, the running app follows it without a rebuild', async () => {
    const { context, page, forbidden } = await session('plus');
    await page.getByTestId('nav-protected-content').click();
    await page.getByTestId('treasure-map').waitFor();
    await page.getByTestId('nav-home').click();
    await page.getByTestId('home-news').waitFor();
    const before = (await health()).policy;

    // The treasure map moves to pro, page and API together.
    const dataFile = join(policies, 'tierguard', 'data.json');
    const data = JSON.parse(readFileSync(dataFile, 'utf8'));
    data.api_routes.GET['/api/treasure-map'].tier = 'pro';
    data.ui_routes['/protected-content'].tier = 'pro';
    data.resources['treasure-map'].read = 'pro';

    // First with the policy's own tests still in the directory: they expect
    // plus, so the service must refuse the change and keep serving.
    writeFileSync(dataFile, JSON.stringify(data, null, 2) + '\n');
    const refused = await waitFor('the service to refuse the change', async () => {
      const p = (await health()).policy;
      return p.failures > before.failures && p;
    });
    assert.equal(refused.revision, before.revision, 'a tree that fails its tests must not be served');

    // The hand-written expectations in authz_test.rego describe the shipped
    // policy; this edited copy drops them rather than restating them.
    rmSync(join(policies, 'tierguard', 'authz', 'authz_test.rego'));
    const changed = await waitFor('the new revision', async () => {
      const p = (await health()).policy;
      return p.revision !== before.revision && p;
    });

    // The same page, no reload: the guard asks the service, which now says pro.
    await page.getByTestId('nav-protected-content').click();
    await page.getByTestId('upgrade-plans').waitFor();
    assert.equal(pathOf(page), '/upgrade');
    assert.equal(query(page).required_tier, 'pro');
    assert.equal(await page.getByTestId('upgrade-message').innerText(), 'This page needs the pro plan.');
    // The revision header on that answer reloaded the route map too.
    await page.waitForFunction(
      (rev) => document.querySelector('[data-testid=revision]')?.textContent === rev,
      changed.revision,
    );
    await shot(page, '08-policy-change-plus-needs-pro');
    assert.deepEqual(forbidden, [], 'no API call answered 403');
    await context.close();

    const pro = await session('pro');
    await pro.page.getByTestId('nav-protected-content').click();
    await pro.page.getByTestId('treasure-map').waitFor();
    await shot(pro.page, '09-policy-change-pro-treasure-map');
    await pro.context.close();

    await walk('after');
  });
});

/**
 * walk visits every UI route of the route map as every tier (`:id` filled
 * with 1) and asserts the page either shows its data or was redirected as
 * the route map says, and that no API call answered 403 on the way.
 */
async function walk(label) {
  const anon = await getJSON('/authz/routes');
  const templates = Object.keys(anon.body.routes).sort();
  assert.ok(templates.length > 0, 'the route map lists UI routes');
  const failures = [];
  let visits = 0;

  for (const tier of TIERS) {
    const token = tier === 'anonymous' ? null : await tokenFor(tier);
    const map = (await getJSON('/authz/routes', token)).body;
    assert.equal(map.tier, tier, `route map tier for a ${tier} token`);
    const { context, page, forbidden, errors } = await session(tier);

    for (const template of templates) {
      const path = template.replace(/:[^/]+/g, '1');
      const marker = MARKERS[template];
      const entry = map.routes[template];
      visits++;
      if (!marker) {
        failures.push(`${tier} ${template}: no data-testid marker known for this route`);
        continue;
      }
      forbidden.length = 0;
      try {
        await page.goto(base + path);
        await page.waitForFunction(
          ({ path, marker }) =>
            document.querySelector('[data-testid=page-error]') ||
            (location.pathname === path && document.querySelector(`[data-testid="${marker}"]`)) ||
            (location.pathname !== path &&
              (document.querySelector('[data-testid=login-form]') ||
                document.querySelector('[data-testid=upgrade-plans]'))),
          { path, marker },
        );
        const at = pathOf(page);
        const shown = await page.getByTestId('page-error').count();
        if (shown) {
          failures.push(`${tier} ${path}: the page shows an API error: ${await page.getByTestId('page-error').first().innerText()}`);
        } else if (entry.allow && at !== path) {
          failures.push(`${tier} ${path}: allowed by the route map but redirected to ${page.url()}`);
        } else if (!entry.allow && at === path) {
          failures.push(`${tier} ${path}: denied by the route map (${entry.reason}) but rendered`);
        } else if (!entry.allow) {
          const want = entry.reason === 'unauthenticated' ? '/login' : '/upgrade';
          const q = query(page);
          if (at !== want || q.required_tier !== (entry.required_tier ?? undefined)) {
            failures.push(`${tier} ${path}: redirected to ${page.url()}, want ${want} needing ${entry.required_tier}`);
          }
        }
      } catch (err) {
        failures.push(`${tier} ${path}: ${String(err).split('\n')[0]}`);
        await shot(page, `walk-${label}-failure-${tier}-${template.replace(/\W+/g, '_')}`);
      }
      if (forbidden.length) {
        failures.push(`${tier} ${path}: API answered 403 for ${forbidden.join(', ')}`);
      }
    }
    if (errors.length) {
      failures.push(`${tier}: uncaught page errors: ${errors.join('; ')}`);
    }
    await context.close();
  }
  assert.ok(visits >= TIERS.length * templates.length);
  assert.deepEqual(failures, [], `consistency walk (${label} the policy change)`);
}
