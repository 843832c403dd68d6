import { Observable } from 'rxjs';
import { TokenSource } from './types';

/**
 * OktaAuthLike is the part of okta-auth-js's `OktaAuth` the adapter uses,
 * typed structurally so this library does not depend on the Okta packages.
 * An `OktaAuth` instance (okta-auth-js 7, as `@okta/okta-angular` 6 provides
 * it under `OKTA_AUTH`) satisfies it as it is.
 */
export interface OktaAuthLike {
  getAccessToken(): string | undefined;
  getIdToken(): string | undefined;
  authStateManager: {
    subscribe(handler: (state: unknown) => void): void;
    unsubscribe(handler?: (state: unknown) => void): void;
  };
}

/**
 * oktaTokenSource adapts okta-auth-js to a TokenSource: tokens come from
 * Okta's token manager (which renews them), and every auth state change
 * (sign-in, sign-out, renewal) counts as a change.
 *
 *     provideTierguard({
 *       tokens: () => oktaTokenSource(inject(OKTA_AUTH)),
 *       sendIdToken: true,
 *     })
 */
export function oktaTokenSource(oktaAuth: OktaAuthLike): TokenSource {
  const changes = new Observable<unknown>((subscriber) => {
    const handler = (state: unknown) => subscriber.next(state);
    oktaAuth.authStateManager.subscribe(handler);
    return () => oktaAuth.authStateManager.unsubscribe(handler);
  });
  return {
    accessToken: async () => oktaAuth.getAccessToken() ?? null,
    idToken: async () => oktaAuth.getIdToken() ?? null,
    changes,
  };
}
