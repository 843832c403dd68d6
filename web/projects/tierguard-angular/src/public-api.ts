/*
 * @tierguard/angular: the Angular side of tierguard. One policy decides
 * which subscription tier may reach which page, API route and feature; this
 * library asks it for the router guard, the feature directive and the
 * route map, and carries the tokens to it.
 */

export * from './lib/types';
export { provideTierguard, TIERGUARD_CONFIG, TIERGUARD_SKIP, TIERGUARD_TOKENS } from './lib/config';
export { TierguardService, MAX_BATCH, REASON_UNAVAILABLE } from './lib/service';
export { tierguardGuard } from './lib/guard';
export { TierguardFeatureDirective, type FeatureDeniedContext } from './lib/feature.directive';
export { tierguardInterceptor } from './lib/interceptor';
export { DevTokenSource, type DevSession } from './lib/dev-token-source';
export { oktaTokenSource, type OktaAuthLike } from './lib/okta';
