import {
  Directive,
  effect,
  EmbeddedViewRef,
  inject,
  input,
  signal,
  TemplateRef,
  untracked,
  ViewContainerRef,
} from '@angular/core';
import { TierguardService } from './service';
import { Decision } from './types';

/** FeatureDeniedContext is what the `else` template of `*tgFeature` sees. */
export interface FeatureDeniedContext {
  /** The lowest tier that would unlock the feature, or null when none would. */
  $implicit: string | null;
  requiredTier: string | null;
  reason: string;
  feature: string;
}

/**
 * TierguardFeatureDirective shows its template when the policy allows a
 * feature for the current user, and otherwise nothing or an upgrade prompt:
 *
 *     <button *tgFeature="'4k'; else upgrade">Watch in 4K</button>
 *     <ng-template #upgrade let-tier>4K needs the {{ tier }} plan</ng-template>
 *
 * It reads the route map (one request for every feature on the page) and
 * follows it when the tokens or the policy revision change. Until the
 * answer is known it renders nothing.
 */
@Directive({ selector: '[tgFeature]' })
export class TierguardFeatureDirective {
  /** The feature's name as the policy's data lists it. */
  readonly tgFeature = input.required<string>();
  /** The template to show on a deny. */
  readonly tgFeatureElse = input<TemplateRef<FeatureDeniedContext> | null>(null);

  private readonly service = inject(TierguardService);
  private readonly vcr = inject(ViewContainerRef);
  private readonly main = inject(TemplateRef<unknown>);
  private readonly decision = signal<{ name: string; d: Decision } | null>(null);
  private shown: 'main' | 'else' | null = null;
  private elseView: EmbeddedViewRef<FeatureDeniedContext> | null = null;
  private asked = 0;

  constructor() {
    // Ask again whenever the name or the route map changes.
    effect(() => {
      const name = this.tgFeature();
      this.service.routeMap();
      const ask = ++this.asked;
      untracked(() => {
        this.service.feature(name).then((d) => {
          if (ask === this.asked) {
            this.decision.set({ name, d });
          }
        });
      });
    });

    effect(() => {
      const current = this.decision();
      const elseTpl = this.tgFeatureElse();
      untracked(() => this.render(current, elseTpl));
    });
  }

  private render(
    current: { name: string; d: Decision } | null,
    elseTpl: TemplateRef<FeatureDeniedContext> | null,
  ): void {
    if (!current) {
      return;
    }
    const { name, d } = current;
    if (d.allow) {
      if (this.shown !== 'main') {
        this.vcr.clear();
        this.elseView = null;
        this.vcr.createEmbeddedView(this.main);
        this.shown = 'main';
      }
      return;
    }

    const ctx: FeatureDeniedContext = {
      $implicit: d.required_tier,
      requiredTier: d.required_tier,
      reason: d.reason,
      feature: name,
    };
    if (!elseTpl) {
      this.vcr.clear();
      this.elseView = null;
      this.shown = null;
      return;
    }
    if (this.shown === 'else' && this.elseView) {
      Object.assign(this.elseView.context, ctx);
      this.elseView.markForCheck();
      return;
    }
    this.vcr.clear();
    this.elseView = this.vcr.createEmbeddedView(elseTpl, ctx);
    this.shown = 'else';
  }
}
