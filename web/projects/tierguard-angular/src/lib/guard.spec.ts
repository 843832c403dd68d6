import { Component } from '@angular/core';
import { TestBed } from '@angular/core/testing';
import { provideRouter, Router } from '@angular/router';
import { tierguardGuard } from './guard';
import { Decision } from './types';
import { settle, setup } from '../testing/helpers';

@Component({ template: 'page' })
class Page {}

const routes = [
  { path: '', component: Page },
  { path: 'protected-content', component: Page, canActivate: [tierguardGuard] },
  { path: 'videos/:id', component: Page, canActivate: [tierguardGuard] },
  { path: 'admin', component: Page, canMatch: [tierguardGuard] },
  { path: 'upgrade', component: Page, canActivate: [tierguardGuard] },
  { path: 'signin', component: Page },
];

/**
 * navigate runs a navigation, answering the first check with d and any
 * later one (the page the guard redirected to) with an allow.
 */
async function navigate(url: string, d: Decision | 'error') {
  const { http } = setup({ loginPath: '/signin' }, [provideRouter(routes)]);
  const router = TestBed.inject(Router);
  let finished = false;
  const done = router.navigateByUrl(url).finally(() => (finished = true));

  const asked: unknown[] = [];
  while (!finished) {
    await settle();
    for (const req of http.match('/authz/check')) {
      asked.push(...req.request.body.checks);
      if (asked.length > 1) {
        req.flush({ revision: 'r1', decisions: [{ allow: true, reason: 'allowed', required_tier: null }] });
      } else if (d === 'error') {
        req.flush('down', { status: 503, statusText: 'Service Unavailable' });
      } else {
        req.flush({ revision: 'r1', decisions: [d] });
      }
    }
  }
  await done;
  return { router, checks: asked.slice(0, 1), http };
}

describe('tierguardGuard', () => {
  it('lets an allowed navigation through, asking about the concrete path', async () => {
    const { router, checks } = await navigate('/videos/42?t=10#top', {
      allow: true,
      reason: 'allowed',
      required_tier: null,
    });
    expect(checks).toEqual([{ kind: 'ui', path: '/videos/42' }]);
    expect(router.url).toBe('/videos/42?t=10#top');
  });

  it('redirects a denied user to the upgrade page with required_tier and reason', async () => {
    const { router } = await navigate('/protected-content', {
      allow: false,
      reason: 'tier_required',
      required_tier: 'plus',
    });
    const url = router.parseUrl(router.url);
    expect(url.root.children['primary'].segments.map((s) => s.path)).toEqual(['upgrade']);
    expect(url.queryParams).toEqual({
      required_tier: 'plus',
      reason: 'tier_required',
      return_url: '/protected-content',
    });
  });

  it('sends an anonymous user to the login page', async () => {
    const { router } = await navigate('/protected-content', {
      allow: false,
      reason: 'unauthenticated',
      required_tier: 'plus',
    });
    expect(router.url.split('?')[0]).toBe('/signin');
    expect(router.parseUrl(router.url).queryParams['required_tier']).toBe('plus');
  });

  it('works as canMatch, asking about the whole target URL', async () => {
    const { router, checks } = await navigate('/admin?tab=users', {
      allow: false,
      reason: 'tier_required',
      required_tier: 'pro',
    });
    expect(checks).toEqual([{ kind: 'ui', path: '/admin' }]);
    expect(router.parseUrl(router.url).queryParams).toEqual({
      required_tier: 'pro',
      reason: 'tier_required',
      return_url: '/admin?tab=users',
    });
  });

  it('fails closed when the service cannot answer', async () => {
    const { router } = await navigate('/protected-content', 'error');
    expect(router.url.split('?')[0]).toBe('/upgrade');
    expect(router.parseUrl(router.url).queryParams['reason']).toBe('service_unavailable');
  });

  it('never redirects the deny page to itself', async () => {
    const { router } = await navigate('/upgrade', {
      allow: false,
      reason: 'policy_error',
      required_tier: null,
    });
    expect(router.url).toBe('/'); // the navigation was refused, not looped
  });
});
