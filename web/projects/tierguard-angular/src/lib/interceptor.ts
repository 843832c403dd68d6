import { DOCUMENT } from '@angular/common';
import {
  HttpErrorResponse,
  HttpEvent,
  HttpHeaders,
  HttpInterceptorFn,
  HttpResponse,
} from '@angular/common/http';
import { inject } from '@angular/core';
import { from, switchMap, tap } from 'rxjs';
import { endpoint, TIERGUARD_CONFIG, TIERGUARD_SKIP, TIERGUARD_TOKENS } from './config';
import { TierguardService } from './service';
import { ResolvedConfig } from './types';

/**
 * tierguardInterceptor attaches the tokens to requests for the tierguard
 * service (and `apiUrls`), and only to those: a token sent to a third
 * party is a token given away. It watches `Tierguard-Revision` on the
 * answers and reloads the route map when the policy changed, and on a 403
 * that carries a tierguard `reason` it refreshes the map too, so the pages
 * a user is offered catch up with what the API now refuses.
 *
 * Register it with `provideHttpClient(withInterceptors([tierguardInterceptor]))`.
 */
export const tierguardInterceptor: HttpInterceptorFn = (req, next) => {
  const cfg = inject(TIERGUARD_CONFIG);
  if (req.context.get(TIERGUARD_SKIP)) {
    return next(req);
  }
  const base = inject(DOCUMENT).baseURI || 'http://localhost/';
  if (!isForService(cfg, req.url, base)) {
    return next(req);
  }
  const tokens = inject(TIERGUARD_TOKENS);
  const service = inject(TierguardService);
  const routesUrl = new URL(endpoint(cfg, '/authz/routes'), base).href;
  const isRoutes = new URL(req.url, base).href.split('?')[0] === routesUrl;

  const observe = (headers: HttpHeaders) => {
    const rev = headers.get('Tierguard-Revision');
    if (rev && !isRoutes) {
      service.noteRevision(rev);
    }
  };

  const wantsId = cfg.sendIdToken && typeof tokens.idToken === 'function';
  const both = Promise.all([tokens.accessToken(), wantsId ? tokens.idToken!() : null]);
  return from(both).pipe(
    switchMap(([access, id]) => {
      const set: Record<string, string> = {};
      if (access && !req.headers.has('Authorization')) {
        set['Authorization'] = `Bearer ${access}`;
      }
      if (id && !req.headers.has('X-ID-Token')) {
        set['X-ID-Token'] = id;
      }
      return next(req.clone({ setHeaders: set }));
    }),
    tap({
      next: (ev: HttpEvent<unknown>) => {
        if (ev instanceof HttpResponse) {
          observe(ev.headers);
        }
      },
      error: (err: unknown) => {
        if (!(err instanceof HttpErrorResponse)) {
          return;
        }
        observe(err.headers);
        if (err.status === 403 && hasReason(err.error) && !isRoutes) {
          service.refresh();
        }
      },
    }),
  );
};

/** hasReason tells a tierguard problem (it carries a reason code) from any 403. */
function hasReason(body: unknown): boolean {
  let b = body;
  if (typeof b === 'string') {
    try {
      b = JSON.parse(b);
    } catch {
      return false;
    }
  }
  return typeof b === 'object' && b !== null && typeof (b as { reason?: unknown }).reason === 'string';
}

/** isForService tells whether a request goes to the service or a configured API. */
export function isForService(cfg: ResolvedConfig, url: string, base: string): boolean {
  let target: URL;
  try {
    target = new URL(url, base);
  } catch {
    return false;
  }
  const prefixes = [cfg.serviceUrl || '/', ...cfg.apiUrls];
  return prefixes.some((p) => under(target, new URL(p, base)));
}

function under(target: URL, prefix: URL): boolean {
  if (target.origin !== prefix.origin) {
    return false;
  }
  const dir = prefix.pathname.endsWith('/') ? prefix.pathname : prefix.pathname + '/';
  return target.pathname === prefix.pathname || target.pathname.startsWith(dir);
}
