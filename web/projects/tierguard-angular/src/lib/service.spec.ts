import { TestBed } from '@angular/core/testing';
import { TierguardService } from './service';
import { Decision } from './types';
import { expectRoutes, flushRoutes, routeMap, settle, setup } from '../testing/helpers';

const allow: Decision = { allow: true, reason: 'allowed', required_tier: null, decision_id: 'd1' };
const needsPlus: Decision = { allow: false, reason: 'tier_required', required_tier: 'plus', decision_id: 'd2' };
const needsPro: Decision = { allow: false, reason: 'tier_required', required_tier: 'pro', decision_id: 'd3' };

describe('TierguardService checks', () => {
  it('folds the checks of one tick into one /authz/check batch, answered in order', async () => {
    const { http } = setup();
    const svc = TestBed.inject(TierguardService);

    const answers = Promise.all([
      svc.check({ kind: 'ui', path: '/' }),
      svc.check({ kind: 'ui', path: '/protected-content' }),
      svc.check({ kind: 'feature', name: '4k' }),
    ]);
    await settle();

    const req = http.expectOne('/authz/check');
    expect(req.request.method).toBe('POST');
    expect(req.request.body).toEqual({
      checks: [
        { kind: 'ui', path: '/' },
        { kind: 'ui', path: '/protected-content' },
        { kind: 'feature', name: '4k' },
      ],
    });
    req.flush({ revision: 'r1', expires_at: '2030-01-01T00:00:00Z', decisions: [allow, needsPlus, needsPro] });

    expect(await answers).toEqual([allow, needsPlus, needsPro]);
    http.verify();
  });

  it('sends checks of different ticks as different batches', async () => {
    const { http } = setup();
    const svc = TestBed.inject(TierguardService);

    const first = svc.check({ kind: 'ui', path: '/' });
    await settle();
    const second = svc.check({ kind: 'ui', path: '/admin' });
    await settle();

    const reqs = http.match('/authz/check');
    expect(reqs.length).toBe(2);
    expect(reqs[0].request.body.checks).toEqual([{ kind: 'ui', path: '/' }]);
    expect(reqs[1].request.body.checks).toEqual([{ kind: 'ui', path: '/admin' }]);
    reqs[0].flush({ revision: 'r1', decisions: [allow] });
    reqs[1].flush({ revision: 'r1', decisions: [needsPro] });
    expect(await first).toEqual(allow);
    expect(await second).toEqual(needsPro);
  });

  it('fails closed: a failed call denies every check of the batch', async () => {
    const { http } = setup();
    const svc = TestBed.inject(TierguardService);

    const answers = Promise.all([svc.check({ kind: 'ui', path: '/' }), svc.check({ kind: 'feature', name: 'hd' })]);
    await settle();
    http.expectOne('/authz/check').flush('boom', { status: 502, statusText: 'Bad Gateway' });

    for (const d of await answers) {
      expect(d).toEqual({ allow: false, reason: 'service_unavailable', required_tier: null });
    }
  });

  it('keeps the reason of a problem+json answer (an expired token)', async () => {
    const { http } = setup();
    const svc = TestBed.inject(TierguardService);

    const answer = svc.check({ kind: 'ui', path: '/account' });
    await settle();
    http
      .expectOne('/authz/check')
      .flush({ status: 401, reason: 'token_expired' }, { status: 401, statusText: 'Unauthorized' });

    expect(await answer).toEqual({ allow: false, reason: 'token_expired', required_tier: null });
  });
});

describe('TierguardService route map', () => {
  it('loads /authz/routes once per token and revision', async () => {
    const { http } = setup();
    const svc = TestBed.inject(TierguardService);

    const a = svc.routes();
    const b = svc.routes(); // concurrent callers share the request
    const req = await expectRoutes(http);
    expect(req.request.headers.has('If-None-Match')).toBe(false);
    flushRoutes(req, routeMap('r1'), '"e1"');

    expect((await a).revision).toBe('r1');
    expect(await b).toBe(await a);
    expect(svc.routeMap()?.revision).toBe('r1');
    expect(svc.tier()).toBe('free');

    await svc.routes(); // from memory
    await settle();
    http.verify();
  });

  it('revalidates with If-None-Match and keeps the body on a 304', async () => {
    const { http } = setup();
    const svc = TestBed.inject(TierguardService);

    const first = svc.routes();
    flushRoutes(await expectRoutes(http), routeMap('r1'), '"e1"');
    const body = await first;

    svc.refresh();
    const req = await expectRoutes(http);
    expect(req.request.headers.get('If-None-Match')).toBe('"e1"');
    req.flush(null, { status: 304, statusText: 'Not Modified', headers: { 'Tierguard-Revision': 'r1' } });
    await settle();

    expect(await svc.routes()).toBe(body);
    expect(svc.routeMap()).toBe(body);
    http.verify(); // the 304 made the map fresh again: no further request
  });

  it('revalidates once the body expires', async () => {
    const { http } = setup();
    const svc = TestBed.inject(TierguardService);

    const first = svc.routes();
    const past = routeMap('r1', { expires_at: new Date(Date.now() - 1000).toISOString() });
    flushRoutes(await expectRoutes(http), past, '"e1"');
    await first;

    const again = svc.routes();
    const req = await expectRoutes(http);
    expect(req.request.headers.get('If-None-Match')).toBe('"e1"');
    flushRoutes(req, routeMap('r1'), '"e1"');
    await again;
  });

  it('reloads when told of another policy revision, not of the same one', async () => {
    const { http } = setup();
    const svc = TestBed.inject(TierguardService);

    const first = svc.routes();
    flushRoutes(await expectRoutes(http), routeMap('r1'), '"e1"');
    await first;

    svc.noteRevision('r1');
    await settle();
    http.verify();

    svc.noteRevision('r2');
    const req = await expectRoutes(http);
    flushRoutes(req, routeMap('r2', { tier: 'free' }), '"e2"');
    await settle();
    expect(svc.routeMap()?.revision).toBe('r2');
  });

  it('drops the map when the tokens change and loads the new one without the old ETag', async () => {
    const { http, tokens } = setup();
    const svc = TestBed.inject(TierguardService);

    const first = svc.routes();
    flushRoutes(await expectRoutes(http), routeMap('r1'), '"e1"');
    await first;

    tokens.signIn('access-2', 'id-2');
    await settle();
    expect(svc.routeMap()).toBeNull();

    const req = await expectRoutes(http);
    expect(req.request.headers.has('If-None-Match')).toBe(false);
    expect(req.request.headers.get('Authorization')).toBe('Bearer access-2');
    flushRoutes(req, routeMap('r1', { tier: 'plus' }), '"e9"');
    await settle();
    expect(svc.tier()).toBe('plus');
  });

  it('answers features from the map and asks about unknown ones in a batch', async () => {
    const { http } = setup();
    const svc = TestBed.inject(TierguardService);

    const fourK = svc.feature('4k');
    flushRoutes(await expectRoutes(http), routeMap('r1'), '"e1"');
    expect(await fourK).toEqual({ allow: false, reason: 'tier_required', required_tier: 'pro' });

    const other = svc.feature('karaoke');
    await settle();
    const req = http.expectOne('/authz/check');
    expect(req.request.body).toEqual({ checks: [{ kind: 'feature', name: 'karaoke' }] });
    req.flush({ revision: 'r1', decisions: [{ allow: false, reason: 'route_unknown', required_tier: null }] });
    expect((await other).reason).toBe('route_unknown');
  });
});
