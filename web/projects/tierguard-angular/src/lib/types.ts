import { Observable } from 'rxjs';

/**
 * Check is one question for POST /authz/check. Paths are concrete
 * (`/videos/42`); the service resolves them to the policy's templates with
 * the same router the API uses, so the browser never runs a matcher of its
 * own.
 */
export type Check =
  | { kind: 'ui'; path: string }
  | { kind: 'api'; method: string; path: string }
  | { kind: 'resource'; type: string; action: string; id?: string }
  | { kind: 'feature'; name: string };

/**
 * Decision is the service's answer to one check. `reason` is a stable code
 * (`allowed`, `unauthenticated`, `tier_required`, `route_unknown`,
 * `policy_error`, a token reason such as `token_expired`, or the client-side
 * `service_unavailable` when the service could not be asked). A decision the
 * client could not get is always a deny: the guard fails closed.
 */
export interface Decision {
  allow: boolean;
  reason: string;
  required_tier: string | null;
  decision_id?: string;
}

/** RouteEntry is one UI route template of GET /authz/routes. */
export interface RouteEntry {
  allow: boolean;
  reason: string;
  required_tier: string | null;
  /** The API routes the page needs (`GET /api/treasure-map`). */
  requires: string[];
}

/** FeatureEntry is one feature of GET /authz/routes. */
export interface FeatureEntry {
  allow: boolean;
  reason: string;
  required_tier: string | null;
}

/**
 * RouteMap is the body of GET /authz/routes: the caller's view of every
 * page and feature under one policy revision.
 */
export interface RouteMap {
  tier: string;
  revision: string;
  expires_at?: string;
  routes: Record<string, RouteEntry>;
  features: Record<string, FeatureEntry>;
}

/**
 * TokenSource is where the library gets the caller's tokens. It is asked
 * before every request to the service, so a source that renews tokens
 * (okta-auth-js does) needs no extra wiring. `changes` fires on sign-in,
 * sign-out and renewal; the route map is reloaded then.
 */
export interface TokenSource {
  /** The OAuth access token for `Authorization: Bearer`, or null when signed out. */
  accessToken(): Promise<string | null>;
  /** The ID token for `X-ID-Token`; sent only when `sendIdToken` is set. */
  idToken?(): Promise<string | null>;
  /** Emits whenever the tokens may have changed. */
  readonly changes: Observable<unknown>;
}

/** TierguardConfig is what `provideTierguard` takes. */
export interface TierguardConfig {
  /**
   * Base URL of the tierguard service, without a trailing slash: `''` (the
   * default) when the app is served from the same origin, else e.g.
   * `https://authz.example.com`. Tokens are attached only to requests under
   * this URL and under `apiUrls`, never to third parties.
   */
  serviceUrl?: string;
  /**
   * Where the tokens come from: a TokenSource, or a factory run in an
   * injection context (`() => oktaTokenSource(inject(OKTA_AUTH))`).
   */
  tokens: TokenSource | (() => TokenSource);
  /** Also send the ID token in `X-ID-Token` (the service binds it to the access token). */
  sendIdToken?: boolean;
  /** Other URL prefixes whose requests carry the tokens (an API on another origin). */
  apiUrls?: string[];
  /** The page a denied user is sent to, with `required_tier` and `reason`. Default `/upgrade`. */
  redirectTo?: string;
  /** The page an anonymous (or expired) user is sent to. Default `/login`. */
  loginPath?: string;
}

/** ResolvedConfig is TierguardConfig with its defaults filled in. */
export interface ResolvedConfig {
  serviceUrl: string;
  sendIdToken: boolean;
  apiUrls: string[];
  redirectTo: string;
  loginPath: string;
}
