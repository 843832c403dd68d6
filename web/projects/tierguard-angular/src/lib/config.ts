import { HttpContextToken } from '@angular/common/http';
import { EnvironmentProviders, InjectionToken, makeEnvironmentProviders } from '@angular/core';
import { ResolvedConfig, TierguardConfig, TokenSource } from './types';

/** TIERGUARD_CONFIG holds the resolved configuration. */
export const TIERGUARD_CONFIG = new InjectionToken<ResolvedConfig>('TIERGUARD_CONFIG');

/** TIERGUARD_TOKENS is the app's TokenSource. */
export const TIERGUARD_TOKENS = new InjectionToken<TokenSource>('TIERGUARD_TOKENS');

/**
 * TIERGUARD_SKIP set to true in a request's HttpContext keeps the
 * interceptor away from it: no tokens attached, no revision tracking.
 */
export const TIERGUARD_SKIP = new HttpContextToken<boolean>(() => false);

/**
 * provideTierguard configures the guard, the directive, the service and the
 * interceptor. The interceptor itself is registered with HttpClient:
 * `provideHttpClient(withInterceptors([tierguardInterceptor]))`.
 */
export function provideTierguard(config: TierguardConfig): EnvironmentProviders {
  const resolved: ResolvedConfig = {
    serviceUrl: (config.serviceUrl ?? '').replace(/\/+$/, ''),
    sendIdToken: config.sendIdToken ?? false,
    apiUrls: config.apiUrls ?? [],
    redirectTo: config.redirectTo ?? '/upgrade',
    loginPath: config.loginPath ?? '/login',
  };
  const tokens = config.tokens;
  return makeEnvironmentProviders([
    { provide: TIERGUARD_CONFIG, useValue: resolved },
    {
      provide: TIERGUARD_TOKENS,
      useFactory: () => (typeof tokens === 'function' ? tokens() : tokens),
    },
  ]);
}

/** endpoint joins the service URL and a path of the service. */
export function endpoint(cfg: ResolvedConfig, path: string): string {
  return cfg.serviceUrl + path;
}
