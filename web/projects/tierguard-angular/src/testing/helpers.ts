import { provideHttpClient, withInterceptors } from '@angular/common/http';
import { HttpTestingController, provideHttpClientTesting, TestRequest } from '@angular/common/http/testing';
import { Provider, EnvironmentProviders } from '@angular/core';
import { TestBed } from '@angular/core/testing';
import { Subject } from 'rxjs';
import { provideTierguard } from '../lib/config';
import { tierguardInterceptor } from '../lib/interceptor';
import { RouteMap, TierguardConfig, TokenSource } from '../lib/types';

/** FakeTokens is a TokenSource whose tokens a test sets by hand. */
export class FakeTokens implements TokenSource {
  access: string | null = 'access-1';
  id: string | null = 'id-1';
  readonly changes = new Subject<void>();
  async accessToken(): Promise<string | null> {
    return this.access;
  }
  async idToken(): Promise<string | null> {
    return this.id;
  }
  /** signIn swaps the tokens and says so, as a real source would. */
  signIn(access: string | null, id: string | null = null): void {
    this.access = access;
    this.id = id;
    this.changes.next();
  }
}

/** setup configures TestBed with the library, its interceptor and a fake backend. */
export function setup(
  config: Partial<TierguardConfig> = {},
  extra: (Provider | EnvironmentProviders)[] = [],
): { tokens: FakeTokens; http: HttpTestingController } {
  const tokens = new FakeTokens();
  TestBed.configureTestingModule({
    providers: [
      provideHttpClient(withInterceptors([tierguardInterceptor])),
      provideHttpClientTesting(),
      provideTierguard({ tokens, sendIdToken: true, ...config }),
      ...extra,
    ],
  });
  return { tokens, http: TestBed.inject(HttpTestingController) };
}

/** settle lets pending promises and microtasks (token reads, batching) run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) {
    await new Promise((r) => setTimeout(r, 0));
  }
}

/** routeMap builds a /authz/routes body. */
export function routeMap(revision: string, over: Partial<RouteMap> = {}): RouteMap {
  return {
    tier: 'free',
    revision,
    expires_at: new Date(Date.now() + 300_000).toISOString(),
    routes: {
      '/': { allow: true, reason: 'allowed', required_tier: null, requires: ['GET /api/news'] },
      '/protected-content': {
        allow: false,
        reason: 'tier_required',
        required_tier: 'plus',
        requires: ['GET /api/treasure-map'],
      },
    },
    features: {
      '4k': { allow: false, reason: 'tier_required', required_tier: 'pro' },
      hd: { allow: true, reason: 'allowed', required_tier: null },
    },
    ...over,
  };
}

/** expectRoutes waits for the one pending GET /authz/routes. */
export async function expectRoutes(http: HttpTestingController): Promise<TestRequest> {
  await settle();
  return http.expectOne((r) => r.method === 'GET' && r.url === '/authz/routes');
}

/** flushRoutes answers a GET /authz/routes with a body, an ETag and the revision header. */
export function flushRoutes(req: TestRequest, body: RouteMap, etag: string): void {
  req.flush(body, { headers: { ETag: etag, 'Tierguard-Revision': body.revision } });
}
