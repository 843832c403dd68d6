import { HttpClient, HttpContext } from '@angular/common/http';
import { TestBed } from '@angular/core/testing';
import { firstValueFrom } from 'rxjs';
import { TIERGUARD_SKIP } from './config';
import { TierguardService } from './service';
import { expectRoutes, flushRoutes, routeMap, settle, setup } from '../testing/helpers';

/** get sends a GET through HttpClient and returns the request the backend saw. */
async function get(url: string, context?: HttpContext) {
  const http = TestBed.inject(HttpClient);
  const done = firstValueFrom(http.get(url, { context })).catch((e) => e);
  await settle();
  return { done };
}

/** loadMap loads the route map at revision r1. */
async function loadMap(http: ReturnType<typeof setup>['http']) {
  const svc = TestBed.inject(TierguardService);
  const p = svc.routes();
  flushRoutes(await expectRoutes(http), routeMap('r1'), '"e1"');
  await p;
  return svc;
}

describe('tierguardInterceptor tokens', () => {
  it('attaches the access and ID tokens to requests for the service', async () => {
    const { http } = setup();
    await get('/api/videos');
    const req = http.expectOne('/api/videos');
    expect(req.request.headers.get('Authorization')).toBe('Bearer access-1');
    expect(req.request.headers.get('X-ID-Token')).toBe('id-1');
    req.flush({});
  });

  it('leaves the ID token out unless sendIdToken is set', async () => {
    const { http } = setup({ sendIdToken: false });
    await get('/api/videos');
    const req = http.expectOne('/api/videos');
    expect(req.request.headers.get('Authorization')).toBe('Bearer access-1');
    expect(req.request.headers.has('X-ID-Token')).toBe(false);
    req.flush({});
  });

  it('never sends the tokens to another origin', async () => {
    const { http } = setup();
    await get('https://cdn.example.net/api/videos');
    const req = http.expectOne('https://cdn.example.net/api/videos');
    expect(req.request.headers.has('Authorization')).toBe(false);
    expect(req.request.headers.has('X-ID-Token')).toBe(false);
    req.flush({});
  });

  it('with a service on another origin, sends them there and to apiUrls only', async () => {
    const { http } = setup({
      serviceUrl: 'https://authz.example.com/',
      apiUrls: ['https://api.example.com/v1'],
    });
    await get('https://authz.example.com/authz/check');
    await get('https://api.example.com/v1/videos');
    await get('https://api.example.com/v10/videos');
    await get('/local');
    const has = (url: string) => http.expectOne(url).request.headers.has('Authorization');
    expect(has('https://authz.example.com/authz/check')).toBe(true);
    expect(has('https://api.example.com/v1/videos')).toBe(true);
    expect(has('https://api.example.com/v10/videos')).toBe(false);
    expect(has('/local')).toBe(false);
  });

  it('sends no Authorization header when signed out', async () => {
    const { http, tokens } = setup();
    tokens.access = null;
    tokens.id = null;
    await get('/api/news');
    const req = http.expectOne('/api/news');
    expect(req.request.headers.has('Authorization')).toBe(false);
    expect(req.request.headers.has('X-ID-Token')).toBe(false);
  });

  it('keeps away from requests marked TIERGUARD_SKIP', async () => {
    const { http } = setup();
    await get('/dev/token', new HttpContext().set(TIERGUARD_SKIP, true));
    expect(http.expectOne('/dev/token').request.headers.has('Authorization')).toBe(false);
  });
});

describe('tierguardInterceptor route map upkeep', () => {
  it('reloads the route map when Tierguard-Revision changes', async () => {
    const { http } = setup();
    const svc = await loadMap(http);

    await get('/api/news');
    http.expectOne('/api/news').flush({}, { headers: { 'Tierguard-Revision': 'r1' } });
    await settle();
    http.expectNone('/authz/routes'); // same revision: nothing to do

    await get('/api/videos');
    http.expectOne('/api/videos').flush({}, { headers: { 'Tierguard-Revision': 'r2' } });
    const req = await expectRoutes(http);
    expect(req.request.headers.get('If-None-Match')).toBe('"e1"');
    flushRoutes(req, routeMap('r2'), '"e2"');
    await settle();
    expect(svc.routeMap()?.revision).toBe('r2');
  });

  it('refreshes the route map on a 403 that carries a tierguard reason', async () => {
    const { http } = setup();
    await loadMap(http);

    const { done } = await get('/api/treasure-map');
    http.expectOne('/api/treasure-map').flush(
      { status: 403, reason: 'tier_required', required_tier: 'plus', decision_id: 'x' },
      { status: 403, statusText: 'Forbidden', headers: { 'Tierguard-Revision': 'r1' } },
    );
    expect((await done).status).toBe(403);
    const req = await expectRoutes(http);
    expect(req.request.headers.get('If-None-Match')).toBe('"e1"');
    req.flush(null, { status: 304, statusText: 'Not Modified' });
  });

  it('ignores a 403 that is not tierguard’s', async () => {
    const { http } = setup();
    await loadMap(http);

    await get('/api/other');
    http.expectOne('/api/other').flush('no', { status: 403, statusText: 'Forbidden' });
    await settle();
    http.expectNone('/authz/routes');
  });
});
