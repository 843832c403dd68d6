import { inject } from '@angular/core';
import {
  ActivatedRouteSnapshot,
  CanActivateFn,
  CanMatchFn,
  Route,
  Router,
  RouterStateSnapshot,
  UrlSegment,
  UrlSegmentGroup,
  UrlTree,
} from '@angular/router';
import { TIERGUARD_CONFIG } from './config';
import { TierguardService } from './service';
import { Decision, ResolvedConfig } from './types';

/**
 * tierguardGuard lets a navigation through only when the tierguard service
 * allows the target URL (`{"kind": "ui", "path": "/videos/42"}`). Use it as
 * `canMatch` (a denied user never downloads a lazy route's code) or as
 * `canActivate`. The service resolves the concrete path to its UI route
 * template with the router the API uses: the browser keeps no matcher of
 * its own, so page and API cannot drift apart.
 *
 * On a deny it redirects: an anonymous user (or one whose token the service
 * refused) to `loginPath`, anyone else to `redirectTo`, with `reason`,
 * `required_tier` (when a tier would help) and `return_url` as query
 * parameters. A decision it could not get is a deny (reason
 * `service_unavailable`). It never redirects a page to itself.
 */
export const tierguardGuard: CanMatchFn & CanActivateFn = (
  route: Route | ActivatedRouteSnapshot,
  target: UrlSegment[] | RouterStateSnapshot,
) => {
  const router = inject(Router);
  const service = inject(TierguardService);
  const cfg = inject(TIERGUARD_CONFIG);

  const url = Array.isArray(target) ? matchTarget(router, target) : target.url;
  const path = pathOf(router, url);
  return service.check({ kind: 'ui', path }).then((d) => outcome(router, cfg, d, url, path));
};

/** outcome turns a decision into a guard result. */
function outcome(
  router: Router,
  cfg: ResolvedConfig,
  d: Decision,
  url: string,
  path: string,
): boolean | UrlTree {
  if (d.allow) {
    return true;
  }
  const toLogin = d.reason === 'unauthenticated' || d.reason.startsWith('token_');
  const page = toLogin ? cfg.loginPath : cfg.redirectTo;
  if (pathOf(router, page) === path) {
    return false; // the deny page itself is denied: stay put rather than loop
  }
  const queryParams: Record<string, string> = { reason: d.reason, return_url: url };
  if (d.required_tier) {
    queryParams['required_tier'] = d.required_tier;
  }
  return router.createUrlTree([page], { queryParams });
}

/**
 * matchTarget is the URL a canMatch guard is asked about: the whole URL of
 * the navigation under way, not only the segments this route consumes.
 */
function matchTarget(router: Router, segments: UrlSegment[]): string {
  const nav = router.currentNavigation();
  if (nav) {
    return router.serializeUrl(nav.extractedUrl);
  }
  return '/' + segments.map((s) => s.path).join('/');
}

/**
 * pathOf is the primary outlet's path of an app URL, without query,
 * fragment or matrix parameters: what the browser's address bar shows and
 * what the service resolves.
 */
export function pathOf(router: Router, url: string): string {
  const tree = router.parseUrl(url);
  const parts: string[] = [];
  let group: UrlSegmentGroup | undefined = tree.root.children['primary'];
  while (group) {
    for (const s of group.segments) {
      parts.push(encodeURIComponent(s.path));
    }
    group = group.children['primary'];
  }
  return '/' + parts.join('/');
}
